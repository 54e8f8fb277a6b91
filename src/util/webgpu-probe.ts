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
 * Resolves true when an adapter was found, false when none was, and undefined when
 * the probe itself could not run (the binding is missing, or it took too long), in which case the
 * caller goes on as before.
 */
function probeWebGpuAdapter(timeoutMs = 60_000): Promise<boolean | undefined> {
  let binding: string;
  try {
    binding = pathToFileURL(createRequire(import.meta.url).resolve("webgpu")).href;
  } catch {
    return Promise.resolve(undefined);
  }
  const script = `const { create } = await import(${JSON.stringify(binding)});
const adapter = await create(["backend=vulkan"]).requestAdapter();
process.exit(adapter ? 0 : 3);`;
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
      resolve(code === 0 ? true : code === 3 ? false : undefined);
    });
  });
}

let answer: Promise<boolean | undefined> | undefined;

/** The probe's answer, asked once a process (Linux only: elsewhere undefined, nothing spawned). */
export function hasWebGpuAdapter(): Promise<boolean | undefined> {
  if (process.platform !== "linux") return Promise.resolve(undefined);
  answer ??= probeWebGpuAdapter();
  return answer;
}
