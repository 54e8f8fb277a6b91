/**
 * Whether a device can run at all, told before onnxruntime tries (and prints native dumps), and
 * onnxruntime's own failures to start a device turned into one line that says what to do.
 */
import { existsSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { Device } from "../util/vocabulary.js";
import { hasWebGpuAdapter } from "../util/webgpu-probe.js";

export const NO_WEBGPU_ADAPTER =
  "no WebGPU adapter was found; use --device cpu, or run on the CPU's software Vulkan (SwiftShader, shipped by Debian's chromium) with VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json LD_LIBRARY_PATH=/usr/lib/chromium";

export const NO_CUDA_BINARIES =
  "onnxruntime-node's CUDA binaries are not installed; on a machine with CUDA 12 and cuDNN 9 run ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install, or use --device cpu";

/** The folders the Vulkan loader searches for driver manifests on Linux. */
function vulkanManifestFolders(): string[] {
  const dataHome = process.env.XDG_DATA_HOME || join(homedir(), ".local", "share");
  const dataDirs = (process.env.XDG_DATA_DIRS || "/usr/local/share:/usr/share").split(":");
  const configDirs = (process.env.XDG_CONFIG_DIRS || "/etc/xdg").split(":");
  return [
    ...configDirs.map((d) => join(d, "vulkan", "icd.d")),
    "/etc/vulkan/icd.d",
    join(dataHome, "vulkan", "icd.d"),
    ...dataDirs.map((d) => join(d, "vulkan", "icd.d")),
  ];
}

/** Whether Linux has any Vulkan driver for Dawn to find (WebGPU's backend there). */
export function hasVulkanDriver(): boolean {
  const listed = process.env.VK_DRIVER_FILES || process.env.VK_ICD_FILENAMES;
  if (listed) return listed.split(":").some((file) => file !== "" && existsSync(file));
  return vulkanManifestFolders().some(
    (dir) => existsSync(dir) && readdirSync(dir).some((name) => name.endsWith(".json")),
  );
}

/** The folder onnxruntime-node loads its native libraries from. */
function onnxruntimeBinFolder(): string | undefined {
  try {
    const entry = createRequire(import.meta.url).resolve("onnxruntime-node");
    const root = dirname(dirname(entry));
    return join(root, "bin", "napi-v6", process.platform, process.arch);
  } catch {
    return undefined;
  }
}

/** Why `device` cannot run here, as one line, or undefined when it may. */
export function deviceUnavailable(device: Device): string | undefined {
  if (device === "webgpu" && process.platform === "linux" && !hasVulkanDriver())
    return NO_WEBGPU_ADAPTER;
  if (device === "cuda" && process.platform === "linux") {
    const bin = onnxruntimeBinFolder();
    if (bin && existsSync(bin) && !existsSync(join(bin, "libonnxruntime_providers_cuda.so")))
      return NO_CUDA_BINARIES;
  }
  return undefined;
}

/**
 * Why `device` cannot run here, as one line, or undefined when it may: `deviceUnavailable` and,
 * for WebGPU on Linux with a driver manifest present, a probe for an adapter (once a process).
 */
export async function deviceUnavailableProbed(device: Device): Promise<string | undefined> {
  const quick = deviceUnavailable(device);
  if (quick || device !== "webgpu" || process.platform !== "linux") return quick;
  return (await hasWebGpuAdapter()) === false ? NO_WEBGPU_ADAPTER : undefined;
}

/** onnxruntime's message when a device fails to start, as one line that says what to do. */
export function explainDeviceError(message: string): string | undefined {
  if (/Failed to get a WebGPU adapter|No supported adapters/i.test(message))
    return NO_WEBGPU_ADAPTER;
  if (/AppendExecutionProvider_Cuda|providers_cuda|providers_shared\.so/i.test(message))
    return NO_CUDA_BINARIES;
  return undefined;
}
