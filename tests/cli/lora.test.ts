// LoRAs through the command line: the fixture pipelines cases with --lora and with a
// <lora:name:weight> tag resolved against --lora-dir, the UNet and text encoder written by
// `convert --lora`, `info` on a LoRA file, and bad input (one line, nothing written).
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readGenerationInfo, readPngFile } from "../../src/index.js";
import {
  createSession,
  float32Tensor,
  int64Tensor,
  runFloat32,
} from "../../src/runtime/session.js";
import { encodeSafetensors } from "../../src/weights/safetensors.js";
import { fixturePath, maxAbsDiff, openCaseTensors } from "../fixtures.js";
import { expectOneLineError, filesIn, readRawImage, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
const tensors = openCaseTensors("lora");
afterAll(() => {
  ws.remove();
  tensors.close();
});

const KOHYA = fixturePath("lora", "style.kohya.safetensors");
const TEXT_MODEL = fixturePath("lora", "style.kohya-text-model.safetensors");
const DIFFUSERS = fixturePath("lora", "style.diffusers.safetensors");

const latents = () =>
  ws.write(
    "lora-latents.safetensors",
    encodeSafetensors({
      latents: {
        dtype: "F32",
        shape: [1, 4, 16, 16],
        data: tensors.readFloat32("pipeline.latents"),
      },
    }),
  );

/** The reference call of the pipeline cases (cases/lora.json) as flags. */
function caseFlags(out: string, raw: string): string[] {
  return [
    "--model",
    SD15,
    "--negative",
    "blurry",
    "--size",
    "128",
    "--steps",
    "4",
    "--cfg",
    "7.5",
    "--scheduler",
    "EulerDiscreteScheduler",
    "--latents",
    latents(),
    "--seed",
    "5",
    "--raw",
    raw,
    "--out",
    out,
    "--cache-dir",
    ws.cache,
  ];
}

const PROMPT = "a photograph of an astronaut riding a horse";

describe("generate with LoRAs", () => {
  it.each([
    [KOHYA, "kohya", 1.0],
    [KOHYA, "kohya", 0.6],
    [TEXT_MODEL, "kohya", 1.0],
    [TEXT_MODEL, "kohya", 0.6],
    [DIFFUSERS, "diffusers", 0.6],
  ])(
    "reproduces the case of %s at weight %s with --lora file:weight",
    async (file, format, weight) => {
      const out = ws.outDir();
      const raw = ws.path(`raw-${Math.random().toString(36).slice(2)}.safetensors`);
      const run = await runCli([
        "generate",
        PROMPT,
        ...caseFlags(out, raw),
        "--lora",
        `${file}:${weight}`,
      ]);
      expect(run.code, run.stderr).toBe(0);
      const key = `pipeline.${format}@${weight.toFixed(1)}`;
      const diff = maxAbsDiff(readRawImage(raw), tensors.readFloat32(key));
      console.log(`cli ${key} (${file.split("/").pop()}): max abs diff ${diff.toExponential(2)}`);
      expect(diff).toBeLessThan(2e-3);
    },
  );

  it("gives the base model's image at weight 0", async () => {
    const images = [];
    for (const extra of [[], ["--lora", `${KOHYA}:0`]]) {
      const raw = ws.path(`zero-${images.length}.safetensors`);
      const run = await runCli(["generate", PROMPT, ...caseFlags(ws.outDir(), raw), ...extra]);
      expect(run.code, run.stderr).toBe(0);
      images.push(readRawImage(raw));
    }
    expect(images[1]).toEqual(images[0]);
  });

  it("reproduces pipeline.diffusers@1.0 from a <lora:...> tag and --lora-dir, and records it", async () => {
    const folder = ws.path("loras");
    mkdirSync(folder, { recursive: true });
    copyFileSync(DIFFUSERS, join(folder, "style.safetensors"));
    const out = ws.outDir();
    const raw = ws.path("diffusers-raw.safetensors");
    const run = await runCli([
      "generate",
      `${PROMPT} <lora:style:1.0>`,
      ...caseFlags(out, raw),
      "--lora-dir",
      folder,
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(
      maxAbsDiff(readRawImage(raw), tensors.readFloat32("pipeline.diffusers@1.0")),
    ).toBeLessThan(2e-3);
    const path = run.stdout.trim();
    const info = readGenerationInfo(readPngFile(path).text, path);
    expect(info.parameters?.prompt).toBe(`${PROMPT} <lora:style:1>`);
    expect(info.parameters?.extra?.["Lora hashes"]).toBe("style: b92050292f08");
    expect(info.record?.prompt).toEqual([PROMPT]);
    expect(info.record?.loras).toEqual([
      expect.objectContaining({
        name: "style",
        path: join(folder, "style.safetensors"),
        hash: "b92050292f08",
        weight: 1,
      }),
    ]);
  });

  it.each([
    [
      "a non-finite weight",
      ["--lora", `${KOHYA}:inf`],
      /the weight of .*style\.kohya\.safetensors must be a finite number; got "inf"/,
    ],
    [
      "a LoRA that is not a file",
      ["--lora", ws.path("absent.safetensors")],
      /absent\.safetensors: cannot open \(ENOENT\)/,
    ],
    [
      "a tag without --lora-dir",
      ["--prompt-tag", "<lora:style:1>"],
      /the prompt names <lora:style:1>; give a LoRA folder \(--lora-dir\)/,
    ],
    [
      "an unknown tag name",
      ["--prompt-tag", "<lora:nope>", "--lora-dir", fixturePath("lora")],
      /<lora:nope>: no LoRA of that name in .*; it has style\.diffusers, style\.kohya-text-model, style\.kohya$/,
    ],
    ["a corrupt LoRA", ["--lora", "CORRUPT"], /not a valid safetensors file/],
  ])("refuses %s with one line, writing nothing", async (_label, extra, message) => {
    const out = ws.outDir();
    const args = [...extra];
    let prompt = "a cat";
    const tag = args.indexOf("--prompt-tag");
    if (tag >= 0) {
      prompt += ` ${args[tag + 1]}`;
      args.splice(tag, 2);
    }
    const corrupt = args.indexOf("CORRUPT");
    if (corrupt >= 0) args[corrupt] = ws.truncatedCheckpoint();
    const run = await runCli([
      "generate",
      prompt,
      "-m",
      SD15,
      "--size",
      "64",
      "--steps",
      "1",
      "-o",
      out,
      "--cache-dir",
      ws.path("unused-cache"),
      ...args,
    ]);
    expectOneLineError(run, message);
    expect(filesIn(out)).toEqual([]);
    expect(filesIn(ws.path("unused-cache"))).toEqual([]);
  });
});

describe("compare with LoRAs", () => {
  it("runs both images with the LoRA from a tag and records it in the PNG and the JSON", async () => {
    const out = ws.outDir();
    const run = await runCli([
      "compare",
      "a lighthouse <lora:style.kohya:0.6>",
      "-m",
      SD15,
      "--size",
      "64",
      "--steps",
      "1",
      "--todo",
      "2",
      "--warmup",
      "0",
      "--lora-dir",
      fixturePath("lora"),
      "--out",
      out,
      "--json",
      "-",
      "--cache-dir",
      ws.cache,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const record = JSON.parse(run.stdout);
    expect(record.prompt).toBe("a lighthouse");
    expect(record.loras).toEqual([
      expect.objectContaining({ name: "style.kohya", hash: "387991c31374", weight: 0.6 }),
    ]);
    const info = readGenerationInfo(readPngFile(record.image).text, record.image);
    expect(info.parameters?.prompt).toBe("a lighthouse <lora:style.kohya:0.6>");
    expect(info.parameters?.extra?.["Lora hashes"]).toBe("style.kohya: 387991c31374");
  });
});

describe("convert with LoRAs", () => {
  it.each([
    [KOHYA, 0.5],
    [DIFFUSERS, 1.0],
  ])("writes a UNet that reproduces unet.out.style at %s weight %s", async (file, weight) => {
    const out = join(ws.outDir(), "unet.onnx");
    const run = await runCli([
      "convert",
      SD15,
      "--component",
      "unet",
      "-o",
      out,
      "--lora",
      `${file}:${weight}`,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const session = await createSession(out);
    try {
      const sample = tensors.readFloat32("unet.sample");
      const result = await runFloat32(session, {
        sample: float32Tensor(sample, tensors.info("unet.sample").shape),
        timestep: float32Tensor(tensors.readFloat32("unet.timestep"), [2]),
        encoder_hidden_states: float32Tensor(
          tensors.readFloat32("unet.encoder_hidden_states"),
          tensors.info("unet.encoder_hidden_states").shape,
        ),
      });
      const expected = tensors.readFloat32(`unet.out.style@${weight.toFixed(1)}`);
      expect(maxAbsDiff(result.out_sample.data, expected)).toBeLessThan(1e-4);
    } finally {
      await session.release();
    }
  });

  it("writes a text encoder that reproduces text.out.style@0.5", async () => {
    const out = join(ws.outDir(), "text.onnx");
    const run = await runCli([
      "convert",
      SD15,
      "--component",
      "text_encoder",
      "-o",
      out,
      "--lora",
      `${TEXT_MODEL}:0.5`,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const session = await createSession(out);
    try {
      const result = await runFloat32(session, {
        input_ids: int64Tensor(tensors.readBigInt64("text.input_ids"), [1, 77]),
      });
      expect(
        maxAbsDiff(result.last_hidden_state.data, tensors.readFloat32("text.out.style@0.5")),
      ).toBeLessThan(1e-4);
    } finally {
      await session.release();
    }
  });

  it("writes a text encoder that reproduces text.out.style@1.0, recording the LoRA", async () => {
    const out = join(ws.outDir(), "text.onnx");
    const run = await runCli([
      "convert",
      SD15,
      "--component",
      "text_encoder",
      "-o",
      out,
      "--lora",
      DIFFUSERS,
    ]);
    expect(run.code, run.stderr).toBe(0);
    const session = await createSession(out);
    try {
      const result = await runFloat32(session, {
        input_ids: int64Tensor(tensors.readBigInt64("text.input_ids"), [1, 77]),
      });
      expect(
        maxAbsDiff(result.last_hidden_state.data, tensors.readFloat32("text.out.style@1.0")),
      ).toBeLessThan(1e-4);
    } finally {
      await session.release();
    }
    const { readModel } = await import("../../src/onnx/model-io.js");
    const metadata = readModel(out, false).metadataProps ?? [];
    const loras = metadata.find((m) => m.key === "todo_sd.loras")?.value;
    expect(JSON.parse(loras ?? "null")).toEqual([
      { name: "style.diffusers", sha256: expect.stringMatching(/^[0-9a-f]{64}$/), weight: 1 },
    ]);
  });
});

describe("info on a LoRA file", () => {
  it("prints its layout, family, rank, alpha, modules and how many keys match a model", async () => {
    const run = await runCli(["info", KOHYA, "-m", SD15]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain("LoRA, kohya layout, for SD 1.x or SD 2.x");
    expect(run.stdout).toContain("420 keys; rank 4; alpha 8");
    expect(run.stdout).toContain("text_encoder: 12 (k_proj 3, out_proj 3, q_proj 3, v_proj 3)");
    expect(run.stdout).toMatch(/unet: 128 \(attn1\.to_k 16, .*attn2\.to_v 16\)/);
    expect(run.stdout).toContain("420 of 420 keys match its weights");
    const json = await runCli(["info", DIFFUSERS, "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      kind: "lora",
      layout: "peft",
      ranks: [4],
      alphas: [8],
      keys: 280,
    });
  });
});
