// End-to-end: the demo page in headless Chromium (Debian's, driven by playwright-core; no browser
// is downloaded), over a server with the sd15-tiny fixture. Both engines generate (the browser
// one on WASM, headless Chromium has no GPU), a run is cancelled, and bad input shows an error.
// Screenshots go to test-results/web/.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../serve/helpers.js";

const CHROMIUM = process.env.TODO_SD_CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOTS = join(process.cwd(), "test-results", "web");
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let work: string;
let test: TestServer;
let context: BrowserContext;
/** One page for every test, as a person would keep it open: the browser engine loads once. */
let page: Page;
/** Console errors and page errors during the current test. */
let problems: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `Chromium is not at ${CHROMIUM}: install Debian's (apt-get install chromium) or set TODO_SD_CHROMIUM; these tests never download a browser`,
    );
  work = mkdtempSync(join(tmpdir(), "todo-sd-e2e-"));
  const site = join(work, "site");
  execFileSync(process.execPath, [join("web", "build.mjs"), site], { stdio: "pipe" });
  test = await startTestServer({ webRoot: site });
  // A fresh profile each run: nothing cached from an earlier one.
  context = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1366, height: 900 },
  });
  mkdirSync(SCREENSHOTS, { recursive: true });
  page = await openPage();
});

afterAll(async () => {
  await context?.close();
  await test?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

afterEach(() => {
  problems = [];
});

async function openPage(): Promise<Page> {
  const page = await context.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page: ${error.message}`));
  await page.goto(test.url);
  await page.waitForSelector("body[data-ready=true]");
  return page;
}

interface FormValues {
  readonly engine?: "server" | "browser" | "browser-wasm";
  readonly width?: string;
  readonly height?: string;
  readonly steps?: string;
  readonly factor?: string;
  readonly seed?: string;
}

async function fill(page: Page, values: FormValues): Promise<void> {
  await page.getByLabel("Prompt", { exact: true }).fill("a lighthouse on a cliff at dusk");
  await page.getByLabel("Size").selectOption("custom");
  await page.getByLabel("Width").fill(values.width ?? "128");
  await page.getByLabel("Height").fill(values.height ?? "128");
  await page.getByLabel("Steps").fill(values.steps ?? "4");
  await page.getByLabel("Factor").selectOption(values.factor ?? "2");
  await page.getByLabel("Seed", { exact: true }).fill(values.seed ?? "3");
  await page.getByLabel("Engine").selectOption(values.engine ?? "server");
}

async function waitForEnd(page: Page): Promise<string> {
  await page.waitForFunction(
    () => /^(Done|Failed|Cancelled)/.test(document.getElementById("status")?.textContent ?? ""),
    null,
    { timeout: 90_000 },
  );
  const status = (await page.textContent("#status")) ?? "";
  // A failure says why in the error box: keep it in the assertion's message.
  const error = (await page.isVisible("#error")) ? await page.textContent("#error") : "";
  return error ? `${status} ${error}` : status;
}

/** Both panes show a loaded 128x128 image with its time; the summary shows speedup and quality. */
async function expectBothPanes(page: Page): Promise<void> {
  for (const phase of ["baseline", "accelerated"]) {
    const pane = page.locator(`#pane-${phase}`);
    const size = await pane
      .locator("img")
      .evaluate((img: HTMLImageElement) => [img.complete, img.naturalWidth, img.naturalHeight]);
    expect(size).toEqual([true, 128, 128]);
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

describe("demo page", () => {
  it("generates on the server engine, submitted from the keyboard", async () => {
    await fill(page, { engine: "server" });
    await page.getByLabel("Prompt", { exact: true }).focus();
    await page.keyboard.press("Control+Enter");
    expect(await waitForEnd(page)).toMatch(/^Done: ToDo ran at \d+\.\d+× the baseline's speed\.$/);
    await expectBothPanes(page);
    await expect(page.textContent("#reduction-label")).resolves.toContain("server (cpu)");
    await expect(page.locator("#history li").count()).resolves.toBeGreaterThanOrEqual(1);
    await expect(page.isHidden("#error")).resolves.toBe(true);
    await page.screenshot({ path: join(SCREENSHOTS, "server-engine.png"), fullPage: true });
    expect(problems).toEqual([]);
  });

  it("generates with ToDo and ToMe in the browser on WASM, isolated so the runtime can use threads", async () => {
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(true);
    await fill(page, { engine: "browser" });
    await page.getByRole("button", { name: "Generate" }).click();
    expect(await waitForEnd(page)).toMatch(/^Done/);
    await expectBothPanes(page);
    // No WebGPU adapter in headless Chromium without a GPU: the engine fell back to WASM.
    await expect(page.textContent("#reduction-label")).resolves.toContain("browser (wasm)");
    const href = await page
      .locator("#pane-accelerated")
      .getByRole("link", { name: "Download PNG" })
      .getAttribute("href");
    expect(href).toMatch(/^blob:/);
    await page.screenshot({ path: join(SCREENSHOTS, "browser-engine-wasm.png"), fullPage: true });

    // ToMe's graph uses other operators (and float64 arithmetic): it must load in the browser too.
    await page.getByLabel("Method").selectOption("tome");
    await page.getByRole("button", { name: "Generate" }).click();
    expect(await waitForEnd(page)).toMatch(/^Done: ToMe ran at/);
    await expectBothPanes(page);
    await expect(page.textContent("#title-accelerated")).resolves.toBe("ToMe, ratio 0.5");
    await page.getByLabel("Method").selectOption("todo");
    expect(problems).toEqual([]);
  });

  it("cancels a run on the server and one in the browser", async () => {
    for (const engine of ["server", "browser-wasm"] as const) {
      await fill(page, { engine, steps: "200" });
      await page.getByRole("button", { name: "Generate" }).click();
      await page.waitForFunction(
        () =>
          /^Step \d+ of/.test(
            document.querySelector("#pane-baseline [data-role=progress-text]")?.textContent ?? "",
          ),
        null,
        { timeout: 60_000 },
      );
      await page.getByRole("button", { name: "Cancel" }).click();
      expect(await waitForEnd(page)).toBe("Cancelled.");
      await expect(page.isDisabled("#cancel")).resolves.toBe(true);
      await expect(page.isEnabled("#generate")).resolves.toBe(true);
      await page.screenshot({ path: join(SCREENSHOTS, `cancelled-${engine}.png`), fullPage: true });
    }
    expect(problems).toEqual([]);
  });

  it("shows validation errors from the server and from the browser engine", async () => {
    await fill(page, { engine: "server", width: "100" });
    await page.getByRole("button", { name: "Generate" }).click();
    expect(await waitForEnd(page)).toBe("Failed. width: must be a multiple of 8; got 100");
    await expect(page.getByRole("alert").textContent()).resolves.toBe(
      "width: must be a multiple of 8; got 100",
    );
    await page.screenshot({ path: join(SCREENSHOTS, "validation-error.png"), fullPage: true });

    await fill(page, { engine: "browser-wasm", steps: "0" });
    await page.getByRole("button", { name: "Generate" }).click();
    expect(await waitForEnd(page)).toBe("Failed. steps: must be from 1 to 200; got 0");
    // A 400 from the server is not a page error; nothing else went wrong.
    expect(problems.filter((p) => !p.includes("400 (Bad Request)"))).toEqual([]);
  });
});
