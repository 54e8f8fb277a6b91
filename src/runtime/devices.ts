/**
 * Devices and their onnxruntime execution providers. The device names themselves are in
 * util/vocabulary.ts; this folder is the only place that imports onnxruntime.
 */
import type { Device } from "../util/vocabulary.js";

/** The execution providers tried for a device, in order (onnxruntime falls back to the last). */
export const EXECUTION_PROVIDERS: Readonly<Record<Device, readonly string[]>> = Object.freeze({
  cpu: ["cpu"],
  webgpu: ["webgpu", "cpu"],
  cuda: ["cuda", "cpu"],
  wasm: ["wasm"],
});
