/**
 * The WebGPU entry point in Node: Dawn's binding (the `webgpu` package) on Vulkan. Dawn finds the
 * Vulkan loader through the environment the process started with, so a machine without a GPU
 * driver needs LD_LIBRARY_PATH and VK_ICD_FILENAMES set before Node starts (SwiftShader, the
 * Vulkan driver on the CPU that Chromium ships, works).
 */

import { DAWN_FEATURES, hasWebGpuAdapter } from "../util/webgpu-probe.js";
import { NO_ADAPTER_HINT } from "./types.js";

/** Toggles for dawn.node. `bench` drops bounds clamps and timestamp rounding for measurements. */
export function dawnToggles(options: { readonly bench?: boolean } = {}): string[] {
  const enable = [...DAWN_FEATURES];
  if (options.bench) enable.push("disable_robustness");
  const toggles = [`enable-dawn-features=${enable.join(",")}`, "backend=vulkan"];
  if (options.bench) toggles.push("disable-dawn-features=timestamp_quantization");
  return toggles;
}

/** `navigator.gpu` of dawn.node, made with the toggles. */
export async function nodeGpu(options: { readonly bench?: boolean } = {}): Promise<GPU> {
  let binding: { create(toggles: string[]): GPU };
  try {
    binding = await import("webgpu");
  } catch (error) {
    throw new Error(
      `cannot load Dawn's WebGPU binding (the webgpu package): ${(error as Error).message.split("\n")[0]}`,
    );
  }
  // Dawn prints a native warning dump when a Vulkan manifest leads nowhere; ask a quiet child first.
  if ((await hasWebGpuAdapter()) === false) throw new Error(NO_ADAPTER_HINT);
  return binding.create(dawnToggles(options));
}
