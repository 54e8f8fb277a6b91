// LoRAs through the library around the numerics: bad input (one line, nothing built or cached),
// the built-model cache key, per-call LoRA sets, the prompt syntax and folder listing, PNG
// parameters, and ONNX export folders.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodePng,
  encodeResultPng,
  extractPromptLoras,
  type GenerateOptions,
  type LoadOptions,
  listLoras,
  loadPipeline,
  readGenerationInfo,
  type StableDiffusionPipeline,
} from "../../src/index.js";
import { encodeSafetensors } from "../../src/weights/safetensors.js";
import { fixturePath, maxAbsDiff, openCaseTensors } from "../fixtures.js";
import { syntheticLora } from "./synthetic.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-lora-api-"));
const SD15 = fixturePath("pipelines", "sd15-tiny");
const KOHYA = fixturePath("lora", "style.kohya.safetensors");
const DIFFUSERS = fixturePath("lora", "style.diffusers.safetensors");
const cases = openCaseTensors("lora");
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
  cases.close();
});

const small: GenerateOptions = { prompt: "a cat", width: 64, height: 64, steps: 2, seed: 3 };
/** Start and end of text, padded to the 77 tokens the encoder takes. */
const ids = [49406, ...new Array<number>(76).fill(49407)];

async function unetOut(pipeline: StableDiffusionPipeline): Promise<Float32Array> {
  const unet = await pipeline.parts.unet(undefined);
  const out = await unet.predict({
    sample: { data: cases.readFloat32("unet.sample"), dims: cases.info("unet.sample").shape },
    timestep: cases.readFloat32("unet.timestep"),
    encoderHiddenStates: {
      data: cases.readFloat32("unet.encoder_hidden_states"),
      dims: cases.info("unet.encoder_hidden_states").shape,
    },
  });
  return out.data;
}

function write(name: string, bytes: Uint8Array | string): string {
  const path = join(work, name);
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, bytes);
  return path;
}

describe("bad LoRA input: one line, nothing built or cached", () => {
  const corrupt = () => {
    const bytes = readFileSync(KOHYA);
    return write("corrupt.safetensors", bytes.subarray(0, bytes.length - 1000));
  };
  const sd1ForSdxl = () => DIFFUSERS;
  it.each([
    [
      "a file with no LoRA keys",
      () => fixturePath("pipelines", "sd15-tiny", "unet", "diffusion_pytorch_model.safetensors"),
      SD15,
      /no LoRA weights in this file/,
    ],
    ["a corrupt (truncated) file", corrupt, SD15, /not a valid safetensors file: .*truncated file/],
    ["a missing file", () => join(work, "absent.safetensors"), SD15, /cannot open \(ENOENT\)/],
    [
      "an SD 1.x LoRA on SDXL",
      sd1ForSdxl,
      fixturePath("pipelines", "sdxl-tiny"),
      /a LoRA for SD 1\.x or SD 2\.x \(keys for one text encoder only\); the model .* is SDXL$/,
    ],
    [
      "a LyCORIS LoHa file",
      () =>
        write(
          "loha.safetensors",
          encodeSafetensors({
            "lora_unet_a.hada_w1_a": { dtype: "F32", shape: [1], data: Float32Array.of(1) },
          }),
        ),
      SD15,
      /holds LoHa weights, which are not supported/,
    ],
  ] as const)("%s", async (_label, lora, model, message) => {
    const cacheDir = join(work, `cache-${Math.random().toString(36).slice(2)}`);
    const built: string[] = [];
    const error = await loadPipeline(model, {
      cacheDir,
      loras: [{ path: lora(), weight: 1 }],
      onBuild: (c) => built.push(c),
    }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain("\n");
    expect(built).toEqual([]);
    expect(existsSync(cacheDir) ? readdirSync(cacheDir) : []).toEqual([]);
  });

  it.each([Number.NaN, Number.POSITIVE_INFINITY])(
    "a weight of %s, in loadPipeline and in generate",
    async (weight) => {
      const error = await loadPipeline(SD15, {
        cacheDir: false,
        loras: [{ path: KOHYA, weight }],
      }).catch((e: Error) => e);
      expect((error as Error).message).toBe(
        `LoRA ${KOHYA}: weight must be a finite number; got ${weight}`,
      );
      const built: string[] = [];
      const pipeline = await loadPipeline(SD15, { cacheDir: false, onBuild: (c) => built.push(c) });
      try {
        const failed = await pipeline
          .generate({ ...small, loras: [{ path: KOHYA, weight }] })
          .catch((e: Error) => e);
        expect((failed as Error).message).toBe(
          `LoRA ${KOHYA}: weight must be a finite number; got ${weight}`,
        );
        const other = await pipeline
          .generate({ ...small, loras: [{ path: corruptPath() }] })
          .catch((e: Error) => e);
        expect((other as Error).message).toMatch(/not a valid safetensors file/);
        expect(built).toEqual([]);
      } finally {
        await pipeline.release();
      }
      function corruptPath() {
        return corrupt();
      }
    },
  );

  it("warns, with the count and a few names, about keys that land on no weight", async () => {
    const extra = syntheticLora(
      [
        {
          name: "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
          down: [2, 16],
          up: [16, 2],
          alpha: 2,
        },
        {
          name: "lora_unet_down_blocks_9_attentions_0_proj_in",
          down: [2, 16],
          up: [16, 2],
          alpha: 2,
        },
        {
          name: "lora_unet_down_blocks_0_attentions_0_proj_in",
          down: [2, 8],
          up: [16, 2],
          alpha: 2,
        },
      ],
      "kohya",
      9,
    );
    const path = write("partial.safetensors", extra.bytes);
    const warnings: string[] = [];
    const pipeline = await loadPipeline(SD15, {
      cacheDir: false,
      loras: [{ path }],
      onWarning: (m) => warnings.push(m),
    });
    await pipeline.release();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /partial\.safetensors: 6 of 9 keys match no weight of .* and are ignored: lora_unet_down_blocks_9_attentions_0_proj_in\.lora_down\.weight, .* and 3 more$/,
    );
  });
});

describe("the built-model cache key", () => {
  it("builds anew for another weight and reuses the same weight, across pipelines and per call", async () => {
    const cacheDir = join(work, "cache-key");
    const built: string[] = [];
    const options: LoadOptions = { cacheDir, onBuild: (c) => built.push(c) };
    const first = await loadPipeline(SD15, { ...options, loras: [{ path: KOHYA, weight: 1 }] });
    const full = await unetOut(first);
    await first.parts.textEncoders[0].encode([ids], {});
    await first.release();
    expect(built.sort()).toEqual(["text_encoder", "unet"]);

    built.length = 0;
    const again = await loadPipeline(SD15, { ...options, loras: [{ path: KOHYA, weight: 1 }] });
    expect(await unetOut(again)).toEqual(full);
    await again.parts.textEncoders[0].encode([ids], {});
    expect(built).toEqual([]);

    // Per call: another weight builds, going back reuses, and the plain model is its own entry.
    const switched: string[] = [];
    for (const loras of [
      [{ path: KOHYA, weight: 0.5 }],
      [{ path: KOHYA, weight: 1 }],
      [{ path: KOHYA, weight: 0.5 }],
      [],
    ]) {
      built.length = 0;
      const result = await again.generate({ ...small, loras });
      switched.push(
        `${result.parameters.loras.map((l) => l.weight).join(",")}:${[...built].sort().join("+")}`,
      );
    }
    await again.release();
    expect(switched).toEqual([
      "0.5:text_encoder+unet+vae_decoder",
      "1:",
      "0.5:",
      ":text_encoder+unet",
    ]);
  });
});

describe("per-call LoRA sets", () => {
  it("gives the loaded set's result when generate asks for it, and the plain model's for []", async () => {
    const plain = await loadPipeline(SD15, { cacheDir: false });
    const withLora = await loadPipeline(SD15, {
      cacheDir: false,
      loras: [{ path: KOHYA, weight: 0.6 }],
    });
    try {
      const a = await withLora.generate(small);
      const b = await plain.generate({ ...small, loras: [{ path: KOHYA, weight: 0.6 }] });
      expect(b.images.data).toEqual(a.images.data);
      const c = await withLora.generate({ ...small, loras: [] });
      const d = await plain.generate(small);
      expect(c.images.data).toEqual(d.images.data);
      expect(maxAbsDiff(a.images.data, d.images.data)).toBeGreaterThan(1e-3);
      expect(a.parameters.loras).toEqual([
        expect.objectContaining({
          name: "style.kohya",
          path: KOHYA,
          hash: "387991c31374",
          weight: 0.6,
        }),
      ]);
      // PNG: the web UIs' tags and hashes, and the record's files, hashes and weights.
      const png = decodePng(encodeResultPng(a, 0, "sd15-tiny"), "png");
      const info = readGenerationInfo(png.text, "png");
      expect(info.parameters?.prompt).toBe("a cat <lora:style.kohya:0.6>");
      expect(info.parameters?.extra?.["Lora hashes"]).toBe("style.kohya: 387991c31374");
      expect(info.record?.loras).toEqual([
        expect.objectContaining({
          name: "style.kohya",
          path: KOHYA,
          hash: "387991c31374",
          weight: 0.6,
          sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
        }),
      ]);
    } finally {
      await plain.release();
      await withLora.release();
    }
  });
});

describe("prompt syntax and LoRA folders", () => {
  const folder = join(work, "loras");
  beforeAll(() => {
    mkdirSync(join(folder, "styles"), { recursive: true });
    copyFileSync(KOHYA, join(folder, "style.kohya.safetensors"));
    copyFileSync(DIFFUSERS, join(folder, "styles", "painted.safetensors"));
    copyFileSync(DIFFUSERS, join(folder, "styles", "style.kohya.safetensors"));
    mkdirSync(join(folder, "more"), { recursive: true });
    copyFileSync(DIFFUSERS, join(folder, "more", "dup.safetensors"));
    copyFileSync(DIFFUSERS, join(folder, "styles", "dup.safetensors"));
    writeFileSync(join(folder, "notes.safetensors"), "not a safetensors file");
  });

  it("takes the tags out of the prompt and finds their files by name or path", () => {
    const parsed = extractPromptLoras(
      "a cat <lora:painted:0.8>, oil <lora:styles/style.kohya> <LORA:painted:-1>",
      folder,
    );
    expect(parsed.prompt).toBe("a cat, oil");
    expect(parsed.loras).toEqual([
      { name: "painted", path: join(folder, "styles", "painted.safetensors"), weight: 0.8 },
      {
        name: "styles/style.kohya",
        path: join(folder, "styles", "style.kohya.safetensors"),
        weight: 1,
      },
      { name: "painted", path: join(folder, "styles", "painted.safetensors"), weight: -1 },
    ]);
    expect(extractPromptLoras("no tags here", undefined)).toEqual({
      prompt: "no tags here",
      loras: [],
    });
  });

  it.each([
    [
      "an unknown name",
      "<lora:nope:1>",
      folder,
      /^<lora:nope>: no LoRA of that name in .*loras; it has more\/dup, notes, style\.kohya, styles\/dup, styles\/painted, styles\/style\.kohya$/,
    ],
    [
      "a name two files share",
      "<lora:dup>",
      folder,
      /2 files in .* have that name \(more\/dup, styles\/dup\); name one by its path$/,
    ],
    [
      "a non-finite weight",
      "<lora:painted:inf>",
      folder,
      /^<lora:painted:inf>: the weight must be a finite number$/,
    ],
    [
      "a tag with three fields",
      "<lora:painted:1:2>",
      folder,
      /write <lora:name> or <lora:name:weight>$/,
    ],
    ["a tag without a folder", "<lora:painted>", undefined, /give a LoRA folder \(--lora-dir\)/],
  ] as const)("rejects %s with one line", (_label, prompt, dir, message) => {
    expect(() => extractPromptLoras(`a cat ${prompt}`, dir)).toThrow(message);
  });

  it("lists a folder's LoRAs with name, hash and family, leaving out other files", () => {
    const skipped: string[] = [];
    const listed = listLoras(folder, (path) => skipped.push(path));
    expect(listed.map((l) => [l.name, l.hash, l.families, l.layout])).toEqual([
      ["dup", "b92050292f08", ["sd1", "sd2"], "peft"],
      ["style.kohya", "387991c31374", ["sd1", "sd2"], "kohya"],
      ["dup", "b92050292f08", ["sd1", "sd2"], "peft"],
      ["painted", "b92050292f08", ["sd1", "sd2"], "peft"],
      ["style.kohya", "b92050292f08", ["sd1", "sd2"], "peft"],
    ]);
    expect(skipped).toEqual([join(folder, "notes.safetensors")]);
  });
});

describe("ONNX export folders", () => {
  const ONNX = fixturePath("onnx", "sd15-tiny");

  it("refuses a LoRA on weights the export renamed, with one line", async () => {
    const error = await loadPipeline(ONNX, { cacheDir: false, loras: [{ path: KOHYA }] }).catch(
      (e: Error) => e,
    );
    expect((error as Error).message).toMatch(
      /style\.kohya\.safetensors: 140 of its modules name no weight of .*; this ONNX export does not keep the diffusers names of those weights; load the model from its diffusers folder or checkpoint to use this LoRA$/,
    );
  });

  it("adds a convolution LoRA to the initializers that kept their names, as the built model does", async () => {
    const locon = syntheticLora(
      [
        {
          name: "lora_unet_down_blocks_0_resnets_0_conv1",
          down: [4, 16, 3, 3],
          up: [16, 4, 1, 1],
          alpha: 4,
        },
        {
          name: "lora_unet_up_blocks_3_attentions_1_proj_in",
          down: [4, 16, 1, 1],
          up: [16, 4, 1, 1],
          alpha: 2,
        },
        { name: "lora_unet_mid_block_resnets_0_conv2", down: [2, 32, 3, 3], up: [32, 2, 1, 1] },
      ],
      "kohya",
      21,
    );
    const path = write("locon.safetensors", locon.bytes);
    const cacheDir = join(work, "cache-onnx");
    const exported = await loadPipeline(ONNX, { cacheDir, loras: [{ path, weight: 0.9 }] });
    const built = await loadPipeline(SD15, { cacheDir: false, loras: [{ path, weight: 0.9 }] });
    const plainExport = await loadPipeline(ONNX, { cacheDir });
    try {
      const fromExport = await unetOut(exported);
      const fromBuild = await unetOut(built);
      expect(maxAbsDiff(fromExport, fromBuild)).toBeLessThan(1e-4);
      expect(maxAbsDiff(fromExport, await unetOut(plainExport))).toBeGreaterThan(1e-2);
      expect(
        maxAbsDiff(await unetOut(plainExport), cases.readFloat32("unet.out.none")),
      ).toBeLessThan(1e-4);
    } finally {
      await exported.release();
      await built.release();
      await plainExport.release();
    }
  });
});

describe("component models for another runtime (the browser engine)", () => {
  it("builds LoRA-merged models under their own keys, for the loaded set and per request", async () => {
    const { openComponentModels } = await import("../../src/pipelines/component-models.js");
    const { createSession, float32Tensor, runFloat32 } = await import(
      "../../src/runtime/session.js"
    );
    const cacheDir = join(work, "cache-components");
    const built: string[] = [];
    const withLora = await openComponentModels(SD15, {
      backend: "wasm",
      cacheDir,
      loras: [{ path: KOHYA, weight: 1 }],
      onBuild: (c) => built.push(c),
    });
    const plain = await openComponentModels(SD15, { backend: "wasm", cacheDir });
    try {
      expect(withLora.loras.map((l) => [l.name, l.weight])).toEqual([["style.kohya", 1]]);
      const unet = await withLora.unet(undefined);
      expect(unet.key).not.toBe((await plain.unet(undefined)).key);
      const half = plain.withLoras([{ path: DIFFUSERS, weight: 0.5 }]);
      const same = plain.withLoras([{ path: KOHYA, weight: 1 }]);
      try {
        expect((await same.unet(undefined)).key).toBe(unet.key);
        expect((await same.textEncoder(0, {})).key).toBe((await withLora.textEncoder(0, {})).key);
        const halfUnet = await half.unet(undefined);
        expect(halfUnet.key).not.toBe(unet.key);
        for (const [file, weight] of [
          [unet, "1.0"],
          [halfUnet, "0.5"],
        ] as const) {
          const session = await createSession(file.modelPath);
          try {
            const result = await runFloat32(session, {
              sample: float32Tensor(
                cases.readFloat32("unet.sample"),
                cases.info("unet.sample").shape,
              ),
              timestep: float32Tensor(cases.readFloat32("unet.timestep"), [2]),
              encoder_hidden_states: float32Tensor(
                cases.readFloat32("unet.encoder_hidden_states"),
                cases.info("unet.encoder_hidden_states").shape,
              ),
            });
            expect(
              maxAbsDiff(result.out_sample.data, cases.readFloat32(`unet.out.style@${weight}`)),
            ).toBeLessThan(1e-4);
          } finally {
            await session.release();
          }
        }
      } finally {
        half.close();
        same.close();
      }
      expect(() => plain.withLoras([{ path: KOHYA, weight: Number.NaN }])).toThrow(
        `LoRA ${KOHYA}: weight must be a finite number; got NaN`,
      );
    } finally {
      withLora.close();
      plain.close();
    }
  });
});
