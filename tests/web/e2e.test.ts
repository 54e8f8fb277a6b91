// End-to-end: the demo page in headless Chromium over a server with the sd15-tiny fixture. Both
// engines generate (the browser one on WASM: this Chromium runs without a GPU), a run is
// cancelled, and bad input shows an error. Screenshots go to test-results/web/.
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type DemoSession,
  expectBothPanes,
  fill,
  SCREENSHOTS,
  startDemo,
  waitForEnd,
} from "./helpers.js";

let demo: DemoSession;
/** One page for every test, as a person would keep it open: the browser engine loads once. */
let page: Page;
let problems: string[] = [];

beforeAll(async () => {
  demo = await startDemo(["--disable-gpu"]);
  problems = demo.problems;
  page = await demo.openPage();
});

afterAll(async () => {
  await demo?.close();
});

afterEach(() => {
  problems.length = 0;
});

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
