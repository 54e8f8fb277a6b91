/**
 * Devices and their onnxruntime execution providers, as frozen tables plus pure functions.
 * This folder is the only place that imports onnxruntime.
 */
export type Device = "cpu" | "webgpu" | "cuda" | "wasm";

export const DEVICES: readonly Device[] = Object.freeze(["cpu", "webgpu", "cuda", "wasm"]);

/** The execution providers tried for a device, in order (onnxruntime falls back to the last). */
export const EXECUTION_PROVIDERS: Readonly<Record<Device, readonly string[]>> = Object.freeze({
  cpu: ["cpu"],
  webgpu: ["webgpu", "cpu"],
  cuda: ["cuda", "cpu"],
  wasm: ["wasm"],
});

export function parseDevice(value: string): Device {
  const device = value.toLowerCase();
  if (!(DEVICES as readonly string[]).includes(device)) {
    throw new Error(`unknown device "${value}"; expected one of ${DEVICES.join(", ")}`);
  }
  return device as Device;
}
