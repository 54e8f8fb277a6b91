// Conformance: UNets exported by other tools, patched with the reference arguments of fixture
// variants, reproduce the reference outputs (and so this project's own ToDo UNet) within the
// UNet tolerance.
//
// Session creation dominates (2-4 s per patched export), so by default each export runs the
// variants that exercise distinct wiring: keys/values and all tokens, levels 1 and 2, a
// resampling mode of each kind (strided Slice, pooling, interpolation matrices), ToMe, and the
// stop and switch schedules. The resampling modes themselves are checked against every variant
// by the reduce module's own conformance tests. TODO_SD_PATCH_ALL_VARIANTS=1 runs every variant
// on every export.
import { describe, expect, it } from "vitest";
import { patchUnet } from "../../src/patch/patch-model.js";
import { settingsFromReferenceArgs } from "../../src/reduce/options.js";
import { builtUnet, readExport, runCases, type UnetCase, unetCases } from "./helpers.js";

const TOLERANCE = 1e-4;
const ALL = process.env.TODO_SD_PATCH_ALL_VARIANTS === "1";

const SD15_VARIANTS = [
  "todo-nearest-2",
  "todo-bicubic-2",
  "todo-nearest-2-level2-2",
  "todo-all-nearest-2",
  "tome-kv-0.5",
  "todo-switch-0.8",
];

/** The exports use constant-scale up-samplers, so only sizes the total stride divides run. */
function variantsOf(model: string, wanted?: readonly string[]) {
  const cases = unetCases(model).filter((c) => c.args !== null && c.size !== "20x12");
  const variants = [...new Set(cases.map((c) => c.variant))].filter(
    (v) => ALL || !wanted || wanted.includes(v),
  );
  return variants.map((v) => [v, cases.filter((c) => c.variant === v)] as const);
}

async function expectPatchedMatches(
  source: () => ReturnType<typeof readExport>,
  fixtureModel: string,
  cases: readonly UnetCase[],
  label: string,
  rule: string,
) {
  const model = source();
  const settings = settingsFromReferenceArgs(cases[0].args!);
  const { report } = patchUnet(model, { reduction: settings }, label);
  expect(Object.keys(report.byRule)).toEqual([rule]);
  for (const r of await runCases(model, fixtureModel, cases)) {
    console.log(`patch ${label} ${r.size} ${r.variant}: max abs diff ${r.diff.toExponential(2)}`);
    expect(r.diff).toBeLessThan(TOLERANCE);
  }
}

describe("patched sd15-tiny ONNX folder UNet (external weights)", () => {
  it.each(variantsOf("sd15-tiny", SD15_VARIANTS))("%s", async (_variant, cases) => {
    await expectPatchedMatches(
      () => readExport("onnx/sd15-tiny/unet/model.onnx"),
      "sd15-tiny",
      cases,
      "onnx/sd15-tiny/unet",
      "sdpa-attention",
    );
  });
});

describe("patched sd15-tiny SDPA export (the same graph as the folder's, see rules.test.ts)", () => {
  it.each(variantsOf("sd15-tiny", ["todo-nearest-exact-2", "tome-all-0.5"]))(
    "%s",
    async (_variant, cases) => {
      await expectPatchedMatches(
        () => readExport("onnx/sd15-tiny-unet-sdpa/model.onnx"),
        "sd15-tiny",
        cases,
        "onnx/sd15-tiny-unet-sdpa",
        "sdpa-attention",
      );
    },
  );
});

describe("patched sdxl-tiny export (classic attention)", () => {
  it.each(variantsOf("sdxl-tiny", ["todo-nearest-2-level2-2"]))("%s", async (_variant, cases) => {
    await expectPatchedMatches(
      () => readExport("onnx/sdxl-tiny-unet/model.onnx"),
      "sdxl-tiny",
      cases,
      "onnx/sdxl-tiny-unet",
      "classic-attention",
    );
  });
});

describe("patched UNet with fused MultiHeadAttention (built here without reduction)", () => {
  it.each(variantsOf("sd15-tiny", ["todo-nearest-2", "todo-all-nearest-2"]))(
    "sd15-tiny %s",
    async (_variant, cases) => {
      await expectPatchedMatches(
        () => builtUnet("sd15-tiny"),
        "sd15-tiny",
        cases,
        "built sd15-tiny (MultiHeadAttention)",
        "fused-multi-head-attention",
      );
    },
  );
  it.each(variantsOf("sdxl-tiny", ["todo-avg_pool-level2-2", "tome-all-level2-0.5"]))(
    "sdxl-tiny %s",
    async (_variant, cases) => {
      await expectPatchedMatches(
        () => builtUnet("sdxl-tiny"),
        "sdxl-tiny",
        cases,
        "built sdxl-tiny (MultiHeadAttention)",
        "fused-multi-head-attention",
      );
    },
  );
});
