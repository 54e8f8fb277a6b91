/**
 * The words every layer uses for where a model runs, its element type and its family: frozen
 * tables and one pure function each. No imports, so the builders (which pick operators per
 * device), the runtimes and the browser bundle all share them without loading onnxruntime.
 */

/** Where models run; also the backend whose fastest operators a built graph uses. */
export type Device = "cpu" | "webgpu" | "cuda" | "wasm";

export const DEVICES: readonly Device[] = Object.freeze(["cpu", "webgpu", "cuda", "wasm"]);

/** The devices a browser offers (onnxruntime-web). */
export type WebDevice = Extract<Device, "webgpu" | "wasm">;

export const WEB_DEVICES: readonly WebDevice[] = Object.freeze(["webgpu", "wasm"]);

export function parseDevice(value: string): Device {
  const device = value.toLowerCase();
  if (!(DEVICES as readonly string[]).includes(device)) {
    throw new Error(`unknown device "${value}"; expected one of ${DEVICES.join(", ")}`);
  }
  return device as Device;
}

/** The element type of a model's weights and activations (inputs and outputs stay float32). */
export type ModelDtype = "float32" | "float16";

/** The short names users type for element types, as flags and query parameters spell them. */
export const DTYPE_NAMES: Readonly<Record<string, ModelDtype>> = Object.freeze({
  fp32: "float32",
  fp16: "float16",
  float32: "float32",
  float16: "float16",
});

export function parseDtype(value: string): ModelDtype {
  const name = value.toLowerCase();
  if (!Object.hasOwn(DTYPE_NAMES, name))
    throw new Error(`unknown dtype "${value}"; expected fp32 or fp16`);
  return DTYPE_NAMES[name];
}

/** Whether a device computes in float32 only: the browser's WASM backend. */
export function float32Only(device: Device): boolean {
  return device === "wasm";
}

/**
 * The element type of the UNet and text encoders: as asked, else float32 on CPUs (no fast
 * float16 arithmetic there; WASM computes in float32 only) and float16 on GPUs.
 */
export function modelDtype(device: Device, requested: ModelDtype | undefined): ModelDtype {
  return requested ?? (device === "cpu" || float32Only(device) ? "float32" : "float16");
}

/**
 * The element type of a VAE: the model's, except an SDXL VAE whose config asks for
 * `force_upcast` (SDXL's VAE overflows in float16, so diffusers' SDXL pipelines run it in
 * float32 even in a float16 pipeline). diffusers' SD 1.x and 2.x pipelines never act on the
 * flag, which AutoencoderKL's configs carry as true by default: their VAEs run in the
 * pipeline's dtype, and so do ours (on the kernels engine that is what puts the VAE on the
 * tensor cores).
 */
export function vaeDtype(
  vae: { readonly forceUpcast: boolean },
  modelType: ModelDtype,
  family: ModelFamily,
): ModelDtype {
  return modelType === "float16" && family === "sdxl" && vae.forceUpcast ? "float32" : modelType;
}

/** The Stable Diffusion families: 1.x, 2.x (1024-wide text, `!` padding) and XL. */
export type ModelFamily = "sd1" | "sd2" | "sdxl";

export const MODEL_FAMILIES: readonly ModelFamily[] = Object.freeze(["sd1", "sd2", "sdxl"]);
