// `patchModel` on files: what it writes, what it records, what it prints, and that a refusal
// leaves nothing behind.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readModel } from "../../src/onnx/model-io.js";
import { encodeModel, type ModelProto } from "../../src/onnx/proto.js";
import { PATCH_METADATA_KEY } from "../../src/patch/apply-rules.js";
import { patchModel, patchUnet } from "../../src/patch/patch-model.js";
import {
  parseReductionOptions,
  reductionFromMetadata,
  resolveReduction,
  settingsFromReferenceArgs,
} from "../../src/reduce/options.js";
import { createSession, float32Tensor } from "../../src/runtime/session.js";
import { SeededRandom } from "../../src/util/random.js";
import { fixturePath, maxAbsDiff, openCaseTensors } from "../fixtures.js";
import { builtUnet, readExport, runSession } from "./helpers.js";
import { miniUnet } from "./mini-unet.js";

const dirs: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "todo-sd-patch-"));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const todo2 = parseReductionOptions({ factor: 2, mode: "nearest" });

describe("patchModel", () => {
  it("patches the ONNX folder's UNet (external weights) into one file, with its settings", () => {
    const out = join(tempDir(), "unet-todo.onnx");
    const lines: string[] = [];
    const result = patchModel(fixturePath("onnx/sd15-tiny/unet/model.onnx"), out, {
      reduction: todo2,
      log: (line) => lines.push(line),
    });
    expect(result.files).toEqual([out]);
    expect(result.report.byLevel).toEqual({ 1: 5 });
    expect(lines).toEqual([
      "level 1: 5 self-attention blocks patched (sdpa-attention)",
      "level 2: 5 self-attention blocks left as is",
      "level 3: 5 self-attention blocks left as is",
      "level 4: 1 self-attention block left as is",
      "16 cross-attention blocks left as is",
    ]);
    const written = readModel(out);
    const props = Object.fromEntries((written.metadataProps ?? []).map((p) => [p.key, p.value]));
    expect(props[PATCH_METADATA_KEY]).toBe("1:5");
    expect(reductionFromMetadata(props)).toEqual({ ...todo2, factorLevel2: 1, ratioLevel2: 0 });
  });

  it("writes nothing when it refuses", () => {
    const dir = tempDir();
    const cross = join(dir, "cross.onnx");
    writeFileSync(cross, encodeModel(miniUnet({ pattern: "sdpa", cross: true })));
    expect(() => patchModel(cross, join(dir, "out.onnx"), { reduction: todo2 })).toThrow(
      /^no self-attention blocks recognised in .*cross\.onnx: 3 blocks: cross-attention/,
    );
    const vae = fixturePath("onnx/sd15-tiny/vae_decoder/model.onnx");
    expect(() => patchModel(vae, join(dir, "out.onnx"), { reduction: todo2 })).toThrow(
      /vae_decoder\/model\.onnx is not a UNet/,
    );
    expect(readdirSync(dir)).toEqual(["cross.onnx"]);
  });

  it("refuses to overwrite its input and explains a missing file", () => {
    const input = fixturePath("onnx/sdxl-tiny-unet/model.onnx");
    expect(() => patchModel(input, input, { reduction: todo2 })).toThrow(
      /^outPath must name a new file, not the input /,
    );
    const dir = tempDir();
    expect(() =>
      patchModel(join(dir, "missing.onnx"), join(dir, "out.onnx"), { reduction: todo2 }),
    ).toThrow(/missing\.onnx: cannot read \(ENOENT\)/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("resolves auto factors from the image size, and asks for it when it is unknown", () => {
    const auto = parseReductionOptions({ mode: "nearest" });
    expect(() => patchUnet(miniUnet({ pattern: "mha" }), { reduction: auto })).toThrow(
      /^factor auto needs the image size/,
    );
    const sized = patchUnet(miniUnet({ pattern: "mha" }), {
      reduction: auto,
      width: 1024,
      height: 1024,
    });
    expect(sized.settings.factor).toBe(2);
    // A static export gives its size: 128 x 128 latents are 1024 px.
    const fixed = patchUnet(miniUnet({ pattern: "mha", staticSize: { height: 128, width: 128 } }), {
      reduction: auto,
    });
    expect(fixed.settings.factor).toBe(2);
  });

  it("takes SDXL's auto rule from the text_time inputs: an explicit factor acts at level 2", () => {
    const model = builtUnet("sdxl-tiny");
    const { settings, report } = patchUnet(model, { reduction: todo2 }, "sdxl");
    expect(settings.factorLevel2).toBe(2);
    expect(report.byLevel).toEqual({ 2: 10 });
  });
});

describe("patched grid on sizes the total stride does not divide", () => {
  it("halves the sample size rounding up per level, like the UNet's convolutions", async () => {
    // 17 x 13 latents: level 2 is 9 x 7, where flooring would give 8 x 6.
    const settings = resolveReduction(
      parseReductionOptions({ factor: 2, factorLevel2: 2, mode: "nearest-exact" }),
      { architecture: "sd1" },
    );
    const patched = builtUnet("sd15-tiny");
    patchUnet(patched, { reduction: settings });
    const reference = builtUnet("sd15-tiny", { reduction: settings });
    const random = new SeededRandom(3);
    const feeds = {
      sample: float32Tensor(random.normalArray(2 * 4 * 17 * 13), [2, 4, 17, 13]),
      timestep: float32Tensor(new Float32Array([700, 700]), [2]),
      encoder_hidden_states: float32Tensor(random.normalArray(2 * 77 * 16), [2, 77, 16]),
    };
    const outputs: Float32Array[] = [];
    for (const model of [patched, reference]) {
      const session = await createSession(encodeModel(model));
      outputs.push(await runSession(session, feeds));
      await session.release();
    }
    expect(maxAbsDiff(outputs[0], outputs[1])).toBeLessThan(1e-5);
  });
});

describe("patched equals built", () => {
  async function outputs(models: readonly ModelProto[], timesteps: readonly number[]) {
    const cases = openCaseTensors("unet-sd15-tiny");
    const results: Float32Array[][] = [];
    for (const model of models) {
      const session = await createSession(encodeModel(model));
      const perStep: Float32Array[] = [];
      for (const t of timesteps) {
        perStep.push(
          await runSession(session, {
            sample: float32Tensor(cases.readFloat32("16x16.sample"), [2, 4, 16, 16]),
            timestep: float32Tensor(new Float32Array([t, t]), [2]),
            encoder_hidden_states: float32Tensor(
              cases.readFloat32("16x16.encoder_hidden_states"),
              [2, 77, 16],
            ),
          }),
        );
      }
      await session.release();
      results.push(perStep);
    }
    cases.close();
    return results;
  }

  it("in float16 graphs, ToDo and then ToMe after the switch", async () => {
    const settings = settingsFromReferenceArgs({
      downsample_method: "bilinear",
      downsample_factor: 2,
      timestep_threshold_switch: 0.8,
      use_rand: false,
    });
    const patched = builtUnet("sd15-tiny", { dtype: "float16" });
    expect(patchUnet(patched, { reduction: settings }).report.byLevel).toEqual({ 1: 5, 2: 5 });
    const built = builtUnet("sd15-tiny", { dtype: "float16", reduction: settings });
    const [a, b] = await outputs([patched, built], [900, 700]);
    expect(maxAbsDiff(a[0], b[0])).toBe(0);
    expect(maxAbsDiff(a[1], b[1])).toBe(0);
  });

  it("with seeded random ToMe: blocks named as the builder names them draw the same cells", async () => {
    const settings = settingsFromReferenceArgs({
      merge_method: "similarity",
      ratio: 0.5,
      use_rand: true,
      timestep_threshold_switch: 0,
    });
    expect(settings.random).toBe(true);
    const patched = readExport("onnx/sd15-tiny/unet/model.onnx");
    const { report } = patchUnet(patched, { reduction: settings });
    expect(report.patched[0].name).toBe("down_blocks.0.attentions.0.transformer_blocks.0.attn1");
    const built = builtUnet("sd15-tiny", { reduction: settings });
    const plain = builtUnet("sd15-tiny");
    const [a, b, c] = await outputs([patched, built, plain], [700]);
    expect(maxAbsDiff(a[0], b[0])).toBeLessThan(1e-5);
    expect(maxAbsDiff(a[0], c[0])).toBeGreaterThan(1e-3); // the merge does change the output
  });
});
