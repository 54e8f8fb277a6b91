import { existsSync } from "node:fs";
import { join } from "node:path";
import { defineConfig } from "vitest/config";

// The browser tests drive Debian's Chromium, and the onnxruntime-node WebGPU tests use the Vulkan
// loader and SwiftShader it ships. Without it they are left out with a message, unless
// TODO_SD_REQUIRE_CHROMIUM=1 (CI) asks for them, so that a missing browser fails there instead.
const chromium = process.env.TODO_SD_CHROMIUM ?? "/usr/bin/chromium";
const chromiumLibs = process.env.TODO_SD_CHROMIUM_LIBS ?? "/usr/lib/chromium";
const BROWSER_TESTS = ["tests/web/**", "tests/runtime/webgpu-node.test.ts"];
const haveChromium =
  existsSync(chromium) && existsSync(join(chromiumLibs, "vk_swiftshader_icd.json"));
const skipBrowser = !haveChromium && process.env.TODO_SD_REQUIRE_CHROMIUM !== "1";
if (skipBrowser)
  process.stderr.write(
    `Chromium not found (${chromium}, ${chromiumLibs}): skipping the browser and WebGPU tests (${BROWSER_TESTS.join(", ")}); install it with apt-get install chromium, or set TODO_SD_CHROMIUM and TODO_SD_CHROMIUM_LIBS\n`,
  );

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    exclude: ["**/node_modules/**", ...(skipBrowser ? BROWSER_TESTS : [])],
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
