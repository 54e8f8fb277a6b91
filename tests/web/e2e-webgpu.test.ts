// End-to-end on WebGPU: the demo page's browser engine in headless Chromium whose WebGPU adapter
// is SwiftShader (Vulkan on the CPU; no GPU needed). SwiftShader has no shader-f16, as many real
// adapters do not, so the engine must ask for float32 models: float16 shaders fail to compile and
// the run would never finish. The text conditioning is uploaded to the GPU once per generation,
// and the latents stay in GPU buffers from the first denoising step to the last.
import { join } from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type DemoSession,
  expectBothPanes,
  fill,
  SCREENSHOTS,
  startDemo,
  waitForEnd,
} from "./helpers.js";

let demo: DemoSession;
let page: Page;

/** The RGBA values of a pane's image. */
async function pixels(target: Page, phase: string): Promise<number[]> {
  return target.locator(`#pane-${phase} img`).evaluate((img: HTMLImageElement) => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    if (!context) throw new Error("no 2d canvas");
    context.drawImage(img, 0, 0);
    return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);
  });
}

interface GpuRun {
  /** The status line at the end. */
  readonly end: string;
  /** Every status line the page showed. */
  readonly statuses: readonly string[];
  /** RGBA of the baseline image, whose latents stayed on the GPU. */
  readonly baseline: readonly number[];
}

let gpuRun: Promise<GpuRun> | undefined;

/** Every status line `target` shows from now on, in order. */
async function recordStatuses(target: Page): Promise<string[]> {
  const statuses: string[] = [];
  await target.exposeFunction("reportStatus", (text: string) => statuses.push(text));
  await target.evaluate(() => {
    const status = document.getElementById("status");
    if (!status) return;
    const report = (globalThis as unknown as { reportStatus(text: string): void }).reportStatus;
    new MutationObserver(() => report(status.textContent ?? "")).observe(status, {
      childList: true,
      characterData: true,
      subtree: true,
    });
  });
  return statuses;
}

/**
 * A 64 px generation with the latents on the GPU, made once on `page` by whichever test asks
 * first, so each test can run alone or in any order.
 */
function generateOnGpu(): Promise<GpuRun> {
  gpuRun ??= (async () => {
    const statuses = await recordStatuses(page);
    await fill(page, { engine: "browser", width: "64", height: "64", steps: "2" });
    await page.getByRole("button", { name: "Generate" }).click();
    const end = await waitForEnd(page, 300_000);
    return { end, statuses, baseline: await pixels(page, "baseline") };
  })();
  return gpuRun;
}

beforeAll(async () => {
  demo = await startDemo(["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"]);
  page = await demo.openPage();
});

afterAll(async () => {
  await demo?.close();
});

describe("demo page on WebGPU", () => {
  it("has a WebGPU adapter without shader-f16", async () => {
    const adapter = await page.evaluate(async () => {
      const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
      const found = (await gpu?.requestAdapter()) as
        | { features: { has(name: string): boolean } }
        | null
        | undefined;
      return found ? { shaderF16: found.features.has("shader-f16") } : null;
    });
    expect(adapter).toEqual({ shaderF16: false });
  });

  it("generates baseline and ToDo images in the browser on WebGPU with float32 models", async () => {
    const { end, statuses } = await generateOnGpu();
    expect(end).toMatch(/^Done: ToDo ran at \d+\.\d+× the baseline's speed\.$/);
    await expectBothPanes(page, 64);
    // The latents stayed in GPU buffers from the first step to the last (the model's PNDM takes
    // three UNet calls for two steps).
    for (const phase of ["baseline", "accelerated"])
      await expect(page.textContent(`#pane-${phase} [data-role=progress-text]`)).resolves.toBe(
        "Done: 3 UNet calls, latents kept on the GPU",
      );
    await expect(page.textContent("#reduction-label")).resolves.toContain("browser (webgpu)");
    expect(
      statuses.some((s) => s.includes("WebGPU runtime (fp32: this adapter has no shader-f16)")),
    ).toBe(true);
    await page.screenshot({ path: join(SCREENSHOTS, "browser-engine-webgpu.png"), fullPage: true });
    expect(demo.problems).toEqual([]);
  }, 360_000);

  it("runs the models on the library's kernels when the page asks (?engine=kernels), float32 here", async () => {
    const kernels = await demo.openPage("?engine=kernels");
    const statuses = await recordStatuses(kernels);
    await fill(kernels, { engine: "browser", width: "64", height: "64", steps: "2" });
    await kernels.getByRole("button", { name: "Generate" }).click();
    expect(await waitForEnd(kernels, 300_000)).toMatch(/^Done: ToDo ran at/);
    await expectBothPanes(kernels, 64);
    expect(
      statuses.some((s) => s.includes("the WebGPU kernels (fp32: this adapter has no shader-f16)")),
    ).toBe(true);
    expect(statuses.some((s) => s.includes("onnxruntime-web"))).toBe(false);
    // The kernels engine keeps the latents in GPU buffers between steps too: its models share
    // one device, and the sampler-step graph runs on the kernels as well.
    for (const phase of ["baseline", "accelerated"])
      await expect(kernels.textContent(`#pane-${phase} [data-role=progress-text]`)).resolves.toBe(
        "Done: 3 UNet calls, latents kept on the GPU",
      );
    // The same float32 graphs as onnxruntime-web's run above, summed in another order: the
    // pipelines agree with the reference within 2e-3 on either engine (tests/engine), so the
    // 8-bit images may differ by a level or two, never by a wrong layout's tens of levels.
    const onKernels = await pixels(kernels, "baseline");
    const onOrt = (await generateOnGpu()).baseline;
    expect(onKernels).toHaveLength(onOrt.length);
    expect(Math.max(...onKernels.map((v, i) => Math.abs(v - onOrt[i])))).toBeLessThanOrEqual(2);
    await kernels.close();

    const bad = await demo.openPage("?engine=cuda");
    await fill(bad, { engine: "browser", width: "64", height: "64", steps: "1" });
    await bad.getByRole("button", { name: "Generate" }).click();
    await expect(bad.getByRole("alert").textContent()).resolves.toBe(
      'engine: use auto, kernels or onnxruntime; got "cuda"',
    );
    await bad.close();
    expect(demo.problems).toEqual([]);
  }, 660_000);

  it("runs attention split for a smaller binding limit the page asks for", async () => {
    // 48 MiB for a 512 px plan: sd15-tiny's level-1 self-attention (2 x 4 heads x 4096^2
    // float32 scores, 512 MiB) in 11 slices and the VAE's (4096^2, 64 MiB) in 2; at 64 px the
    // 64 level-1 queries are padded to 66, six a slice.
    const capped = await demo.openPage(`?maxBinding=${48 * 2 ** 20}&latents=host`);
    const modelRequests: string[] = [];
    capped.on("request", (request) => {
      if (/\/api\/model\/(unet|vae-decoder)\?/.test(request.url()))
        modelRequests.push(request.url());
    });
    await fill(capped, { engine: "browser", width: "64", height: "64", steps: "2" });
    await capped.getByRole("button", { name: "Generate" }).click();
    expect(await waitForEnd(capped, 300_000)).toMatch(/^Done: ToDo ran at/);
    await expectBothPanes(capped, 64);
    // This page steps the latents on the host (?latents=host): the same image as the GPU loop's
    // above, up to rounding (split attention is the same arithmetic in another order).
    await expect(capped.textContent("#pane-baseline [data-role=progress-text]")).resolves.toBe(
      "Done: 3 UNet calls",
    );
    const onHost = await pixels(capped, "baseline");
    const onGpu = (await generateOnGpu()).baseline;
    expect(onHost).toHaveLength(onGpu.length);
    expect(Math.max(...onHost.map((v, i) => Math.abs(v - onGpu[i])))).toBeLessThanOrEqual(2);
    expect(modelRequests.length).toBeGreaterThanOrEqual(3);
    for (const url of modelRequests)
      expect(url).toContain(`maxBinding=${48 * 2 ** 20}&latentSide=64`);
    await capped.close();

    // Bad page parameters: the one-line error, before any work.
    for (const [query, message] of [
      ["?maxBinding=12", 'maxBinding: a whole number of bytes, at least 1 MiB; got "12"'],
      ["?latents=cuda", 'latents: use gpu or host; got "cuda"'],
    ]) {
      const bad = await demo.openPage(query);
      await fill(bad, { engine: "browser", width: "64", height: "64", steps: "1" });
      await bad.getByRole("button", { name: "Generate" }).click();
      await expect(bad.getByRole("alert").textContent()).resolves.toBe(message);
      await bad.close();
    }
    expect(demo.problems).toEqual([]);
  }, 660_000);
});
