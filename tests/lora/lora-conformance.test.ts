// LoRA conformance through the public API: the UNet, the text encoder and whole txt2img runs of
// sd15-tiny with each fixture LoRA file (diffusers, kohya, kohya with `text_model` names) at the
// weights the reference used, against the diffusers + peft outputs of cases/lora.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type GenerateOptions,
  loadPipeline,
  type StableDiffusionPipeline,
} from "../../src/index.js";
import { fixturePath, maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";

interface LoraCase {
  kind: string;
  key?: string;
  file?: string;
  weight: number;
  prompt?: string;
  negative_prompt?: string;
  height?: number;
  width?: number;
  steps?: number;
  guidance_scale?: number;
  scheduler?: string;
}

const spec = readCaseJson<{ pipeline: string; cases: LoraCase[] }>("lora");
const tensors = openCaseTensors("lora");
const FILES = {
  diffusers: fixturePath("lora", "style.diffusers.safetensors"),
  kohya: fixturePath("lora", "style.kohya.safetensors"),
  "kohya-text-model": fixturePath("lora", "style.kohya-text-model.safetensors"),
} as const;

let plain: StableDiffusionPipeline;
beforeAll(async () => {
  plain = await loadPipeline(fixturePath(spec.pipeline), { cacheDir: false });
});
afterAll(async () => {
  await plain.release();
  tensors.close();
});

async function unetOut(pipeline: StableDiffusionPipeline): Promise<Float32Array> {
  const unet = await pipeline.parts.unet(undefined);
  const out = await unet.predict({
    sample: { data: tensors.readFloat32("unet.sample"), dims: tensors.info("unet.sample").shape },
    timestep: tensors.readFloat32("unet.timestep"),
    encoderHiddenStates: {
      data: tensors.readFloat32("unet.encoder_hidden_states"),
      dims: tensors.info("unet.encoder_hidden_states").shape,
    },
  });
  return out.data;
}

async function textOut(pipeline: StableDiffusionPipeline): Promise<Float32Array> {
  const ids = [...tensors.readBigInt64("text.input_ids")].map(Number);
  const out = await pipeline.parts.textEncoders[0].encode([ids], {});
  return out.lastHiddenState.data;
}

describe.each(Object.entries(FILES))("the %s file", (format, path) => {
  it.each(spec.cases.filter((c) => c.kind === "unet+text").map((c) => [c.weight] as const))(
    "reproduces the UNet and text encoder at weight %s (loadPipeline)",
    async (weight) => {
      const pipeline = await loadPipeline(fixturePath(spec.pipeline), {
        cacheDir: false,
        loras: [{ path, weight }],
      });
      try {
        expect(pipeline.parts.loras?.map((l) => [l.name, l.weight])).toEqual([
          [`style.${format}`, weight],
        ]);
        const unet = maxAbsDiff(
          await unetOut(pipeline),
          tensors.readFloat32(`unet.out.style@${weight.toFixed(1)}`),
        );
        const text = maxAbsDiff(
          await textOut(pipeline),
          tensors.readFloat32(`text.out.style@${weight.toFixed(1)}`),
        );
        console.log(
          `lora ${format}@${weight}: unet ${unet.toExponential(2)}, text ${text.toExponential(2)}`,
        );
        expect(unet).toBeLessThan(1e-4);
        expect(text).toBeLessThan(1e-4);
      } finally {
        await pipeline.release();
      }
    },
  );

  it("at weight 0 is the base model", async () => {
    const pipeline = await loadPipeline(fixturePath(spec.pipeline), {
      cacheDir: false,
      loras: [{ path, weight: 0 }],
    });
    try {
      expect(await unetOut(pipeline)).toEqual(await unetOut(plain));
      expect(await textOut(pipeline)).toEqual(await textOut(plain));
      expect(
        maxAbsDiff(await unetOut(pipeline), tensors.readFloat32("unet.out.none")),
      ).toBeLessThan(1e-4);
    } finally {
      await pipeline.release();
    }
  });

  const referenceFormat = format === "kohya-text-model" ? "kohya" : format;
  it.each(
    spec.cases
      .filter((c) => c.kind === "pipeline" && c.key?.startsWith(`pipeline.${referenceFormat}@`))
      .map((c) => [c.key!, c] as const),
  )("reproduces %s through generate({ loras })", async (key, c) => {
    const options: GenerateOptions = {
      prompt: c.prompt!,
      negativePrompt: c.negative_prompt,
      width: c.width,
      height: c.height,
      steps: c.steps,
      guidanceScale: c.guidance_scale,
      scheduler: c.scheduler,
      latents: tensors.readFloat32("pipeline.latents"),
      loras: [{ path, weight: c.weight }],
    };
    const result = await plain.generate(options);
    expect(result.parameters.loras.map((l) => l.weight)).toEqual([c.weight]);
    const diff = maxAbsDiff(result.images.data, tensors.readFloat32(key));
    console.log(`${format} ${key}: max abs diff ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(2e-3);
  });
});
