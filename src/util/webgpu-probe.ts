/**
 * Whether Dawn's Node binding finds a WebGPU adapter, asked of a child process. A Vulkan driver
 * manifest can exist with no usable driver behind it (a GPU driver's package without the GPU, no
 * libvulkan); then Dawn prints a multi-line native warning on its way to "no adapter", which the
 * child's discarded stderr keeps from the user. The answer is kept for the process.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

/**
 * The Dawn features the kernels engine turns on: unsafe APIs (subgroup matrices) and f16 on
 * NVIDIA's Vulkan driver, which Dawn otherwise hides. The probe asks with the same ones.
 */
export const DAWN_FEATURES: readonly string[] = Object.freeze([
  "allow_unsafe_apis",
  "vulkan_enable_f16_on_nvidia",
]);

/** What the probe found: no adapter, one without shader-f16, or one with it. */
export type AdapterProbe = "none" | "adapter" | "shader-f16";

/**
 * Resolves to what was found, or undefined when the probe itself could not run (the binding is
 * missing, or it took too long), in which case the caller goes on as before. The adapter is asked
 * for with the toggles the kernels engine uses (Dawn hides shader-f16 on NVIDIA without one).
 */
function probeWebGpuAdapter(timeoutMs = 60_000): Promise<AdapterProbe | undefined> {
  let binding: string;
  try {
    binding = pathToFileURL(createRequire(import.meta.url).resolve("webgpu")).href;
  } catch {
    return Promise.resolve(undefined);
  }
  const script = `const { create } = await import(${JSON.stringify(binding)});
const gpu = create([${JSON.stringify(`enable-dawn-features=${DAWN_FEATURES.join(",")}`)}, "backend=vulkan"]);
const adapter = await gpu.requestAdapter();
process.exit(!adapter ? 3 : adapter.features.has("shader-f16") ? 4 : 0);`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: "ignore",
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      resolve(undefined);
    }, timeoutMs);
    child.on("error", () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? "adapter" : code === 4 ? "shader-f16" : code === 3 ? "none" : undefined);
    });
  });
}

let answer: Promise<AdapterProbe | undefined> | undefined;

/** The probe's answer, asked once a process (Linux only: elsewhere undefined, nothing spawned). */
export function probeAdapter(): Promise<AdapterProbe | undefined> {
  if (process.platform !== "linux") return Promise.resolve(undefined);
  answer ??= probeWebGpuAdapter();
  return answer;
}

/** Whether an adapter was found (undefined: the probe could not tell). */
export async function hasWebGpuAdapter(): Promise<boolean | undefined> {
  const found = await probeAdapter();
  return found === undefined ? undefined : found !== "none";
}
