// Run by kernel-checks.test.ts in a process of its own (Dawn finds its Vulkan driver through the
// environment the process starts with): every kernel check on the adapter's portable f32 path
// (small tiles, plus the default tiling once), then the layer's one-line errors. Prints one JSON
// line; with the argument `no-adapter`, only the error of a driverless start.
import { allKernelChecks } from "../../src/gpu/checks.js";
import { GpuContext } from "../../src/gpu/context.js";
import { checkGemm, GEMM_CASES } from "../../src/gpu/kernels/matmul-checks.js";
import { chooseKernelVariant } from "../../src/gpu/variants.js";

function message(error: unknown): string {
  return (error as Error).message;
}

if (process.argv[2] === "no-adapter") {
  const report: Record<string, string> = {};
  try {
    await GpuContext.create();
    report.created = "yes";
  } catch (error) {
    report.error = message(error);
  }
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}

const ctx = await GpuContext.create();
const variant = chooseKernelVariant(ctx.capabilities, "f32");
const results = [];
for (const check of allKernelChecks({ ci: true })) {
  const outcome = await check.run(ctx, variant);
  results.push({ family: check.family, name: check.name, ...outcome });
}
// The default portable tiling (64 x 64 tiles) once, on the first GEMM case.
const first = GEMM_CASES[0];
results.push({
  family: "gemm",
  name: "default tiling",
  ...(await checkGemm(ctx, variant, first.shape, first.options)),
});
const errors: Record<string, string> = {};
try {
  chooseKernelVariant(ctx.capabilities, "f16");
} catch (error) {
  errors.f16 = message(error);
}
try {
  chooseKernelVariant(ctx.capabilities, "f32", "tensor-core");
} catch (error) {
  errors.tensorCore = message(error);
}
try {
  ctx.allocate([ctx.capabilities.limits.maxStorageBufferBindingSize / 2 + 1, 4], "f32", "huge");
} catch (error) {
  errors.huge = message(error);
}
const pipelines = ctx.pipelines.size;
ctx.destroy();
process.stdout.write(`${JSON.stringify({ variant, pipelines, results, errors })}\n`);
