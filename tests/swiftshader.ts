// Test helper: runs a script on SwiftShader, the Vulkan driver on the CPU that Debian's Chromium
// ships. Dawn and onnxruntime's WebGPU backend find the driver through the environment a process
// starts with, so the work runs in a child process (vite-node) that prints JSON as its last line.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

/** Where Debian's Chromium keeps its Vulkan loader and SwiftShader. */
export const CHROMIUM_LIBS = process.env.TODO_SD_CHROMIUM_LIBS ?? "/usr/lib/chromium";
export const SWIFTSHADER_ICD = join(CHROMIUM_LIBS, "vk_swiftshader_icd.json");

export interface SwiftShaderRun {
  /** Milliseconds before the child is killed. */
  readonly timeout: number;
  /** Another Vulkan driver manifest (a missing one, to test the no-adapter error). */
  readonly icd?: string;
}

/** The last line the script printed, from a child whose Vulkan driver is SwiftShader. */
export async function runOnSwiftShader(
  script: string,
  args: readonly string[],
  { timeout, icd = SWIFTSHADER_ICD }: SwiftShaderRun,
): Promise<string> {
  if (!existsSync(SWIFTSHADER_ICD))
    throw new Error(`${SWIFTSHADER_ICD} (Debian's chromium package) is needed`);
  const { stdout } = await promisify(execFile)(
    join("node_modules", ".bin", "vite-node"),
    [script, ...args],
    {
      env: {
        ...process.env,
        LD_LIBRARY_PATH: [CHROMIUM_LIBS, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":"),
        VK_ICD_FILENAMES: icd,
      },
      timeout,
      maxBuffer: 16 * 2 ** 20,
    },
  );
  return stdout.trim().split("\n").at(-1) ?? "";
}
