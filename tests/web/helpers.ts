// Shared by the demo-page tests: Debian's Chromium driven by playwright-core (no browser is
// downloaded), the form, and what a finished comparison shows.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { expect } from "vitest";
import { startTestServer, type TestServer } from "../serve/helpers.js";

export const CHROMIUM = process.env.TODO_SD_CHROMIUM ?? "/usr/bin/chromium";
export const SCREENSHOTS = join(process.cwd(), "test-results", "web");
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface DemoSession {
  readonly test: TestServer;
  readonly context: BrowserContext;
  /** Console errors and page errors since the last `clear`. */
  readonly problems: string[];
  /** A new page at the demo, with `query` (e.g. "?maxBinding=...") after its address. */
  openPage(query?: string): Promise<Page>;
  close(): Promise<void>;
}

/** Builds the page, serves it with the sd15-tiny fixture and starts Chromium with `args`. */
export async function startDemo(args: readonly string[]): Promise<DemoSession> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `Chromium is not at ${CHROMIUM}: install Debian's (apt-get install chromium) or set TODO_SD_CHROMIUM; these tests never download a browser`,
    );
  const work = mkdtempSync(join(tmpdir(), "todo-sd-e2e-"));
  const site = join(work, "site");
  execFileSync(process.execPath, [join("web", "build.mjs"), site], { stdio: "pipe" });
  const test = await startTestServer({ webRoot: site });
  // A fresh profile each run: nothing cached from an earlier one.
  const context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    viewport: { width: 1366, height: 900 },
  });
  mkdirSync(SCREENSHOTS, { recursive: true });
  const problems: string[] = [];
  return {
    test,
    context,
    problems,
    async openPage(query = "") {
      const page = await context.newPage();
      page.on("console", (message) => {
        if (message.type() === "error") problems.push(`console: ${message.text()}`);
      });
      page.on("pageerror", (error) => problems.push(`page: ${error.message}`));
      await page.goto(`${test.url}/${query}`);
      await page.waitForSelector("body[data-ready=true]");
      return page;
    },
    async close() {
      await context.close();
      await test.close();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

export interface FormValues {
  readonly engine?: "server" | "browser" | "browser-wasm";
  readonly width?: string;
  readonly height?: string;
  readonly steps?: string;
  readonly factor?: string;
  readonly seed?: string;
}

export async function fill(page: Page, values: FormValues): Promise<void> {
  await page.getByLabel("Prompt", { exact: true }).fill("a lighthouse on a cliff at dusk");
  await page.getByLabel("Size").selectOption("custom");
  await page.getByLabel("Width").fill(values.width ?? "128");
  await page.getByLabel("Height").fill(values.height ?? "128");
  await page.getByLabel("Steps").fill(values.steps ?? "4");
  // ToDo, whatever a test before this one left selected (ToMe hides the factor).
  await page.getByLabel("Method").selectOption("todo");
  await page.getByLabel("Factor").selectOption(values.factor ?? "2");
  await page.getByLabel("Seed", { exact: true }).fill(values.seed ?? "3");
  await page.getByLabel("Engine").selectOption(values.engine ?? "server");
}

export async function waitForEnd(page: Page, timeout = 90_000): Promise<string> {
  await page.waitForFunction(
    () => /^(Done|Failed|Cancelled)/.test(document.getElementById("status")?.textContent ?? ""),
    null,
    { timeout },
  );
  const status = (await page.textContent("#status")) ?? "";
  // A failure says why in the error box: keep it in the assertion's message.
  const error = (await page.isVisible("#error")) ? await page.textContent("#error") : "";
  return error ? `${status} ${error}` : status;
}

/** Both panes show a loaded image of `side` px with its time; the summary shows speedup and quality. */
export async function expectBothPanes(page: Page, side = 128): Promise<void> {
  for (const phase of ["baseline", "accelerated"]) {
    const pane = page.locator(`#pane-${phase}`);
    // The image may still be decoding when the run reports its end (a loaded machine).
    await page.waitForFunction(
      (selector) => {
        const img = document.querySelector<HTMLImageElement>(selector);
        return img?.complete === true && img.naturalWidth > 0;
      },
      `#pane-${phase} img`,
      { timeout: 30_000 },
    );
    const size = await pane
      .locator("img")
      .evaluate((img: HTMLImageElement) => [img.complete, img.naturalWidth, img.naturalHeight]);
    expect(size).toEqual([true, side, side]);
    await expect(pane.locator("[data-role=time]").textContent()).resolves.toMatch(
      /^\d+\.\d+ s · UNet \d+\.\d+ s$/,
    );
    await expect(
      pane.getByRole("link", { name: "Download PNG" }).getAttribute("href"),
    ).resolves.toBeTruthy();
  }
  await expect(page.textContent("#speedup")).resolves.toMatch(
    /^Speedup \d+\.\d+× overall, \d+\.\d+× in the UNet$/,
  );
  await expect(page.textContent("#metric-psnr")).resolves.toMatch(/^\d+\.\d+ dB$/);
  await expect(page.textContent("#metric-ssim")).resolves.toMatch(/^\d\.\d{4}$/);
  await expect(page.textContent("#metric-mse")).resolves.toMatch(/e-?\d+$/);
}
