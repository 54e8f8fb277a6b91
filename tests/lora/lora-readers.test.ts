// LoRA readers beyond the fixture files: SDXL in kohya form (original LDM UNet names, te1/te2,
// convolution LoRAs), SD 2.x in diffusers/PEFT form (adapter metadata with an alpha pattern,
// transformers 5 text-encoder names) and the older diffusers spellings, on the sdxl-tiny and
// sd21-tiny fixtures, each merged weight checked against a float64 reference; an SD 1.x kohya
// file with LDM UNet names against the reference outputs; stacking.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadPipeline } from "../../src/index.js";
import { applyLoras } from "../../src/lora/apply-loras.js";
import { openModelFiles } from "../../src/pipelines/load.js";
import type { ModelFiles } from "../../src/weights/model-files.js";
import type { TensorToWrite } from "../../src/weights/safetensors.js";
import { encodeSafetensors, SafetensorsFile } from "../../src/weights/safetensors.js";
import { fixturePath, maxAbsDiff, openCaseTensors } from "../fixtures.js";
import {
  mergeReference,
  roundingSteps,
  type Spelling,
  type SyntheticModule,
  syntheticLora,
} from "./synthetic.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-lora-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

type Component = "unet" | "text_encoder" | "text_encoder_2";

/** A module of a synthetic file, the model weight it must land on, and its alpha / rank. */
interface Expected extends SyntheticModule {
  readonly component: Component;
  readonly key: string;
  readonly scale: number;
}

async function checkMerges(
  pipeline: string,
  family: "sd2" | "sdxl",
  files: readonly {
    modules: readonly Expected[];
    spelling: Spelling;
    metadata?: Record<string, string>;
  }[],
  weight: number,
): Promise<void> {
  const written = files.map((f, i) => {
    const lora = syntheticLora(f.modules, f.spelling, 100 + i, f.metadata);
    const path = join(work, `${pipeline}-${i}.safetensors`);
    writeFileSync(path, lora.bytes);
    return { ...f, path, values: lora.values };
  });
  const { files: model } = await openModelFiles(fixturePath("pipelines", pipeline));
  const warnings: string[] = [];
  const applied = applyLoras(
    model,
    written.map((f) => ({ path: f.path, weight })),
    { family, onWarning: (m) => warnings.push(m) },
  );
  try {
    expect(warnings).toEqual([]);
    for (const file of written) {
      for (const m of file.modules) {
        const base = model.weights[m.component]!;
        const rows = base.info(m.key).shape[0];
        const values = file.values.get(m.name)!;
        const expected = mergeReference(base.readFloat32(m.key), rows, [
          { ...values, rank: m.down[0], scale: weight * m.scale },
        ]);
        const merged = (applied.files.weights[m.component] as ModelFiles["weights"]["unet"])!;
        const steps = roundingSteps(merged.readFloat32(m.key), expected);
        expect(steps, `${m.name} -> ${m.key}`).toBeLessThan(1);
        // The delta is not negligible: the weight really changed.
        expect(maxAbsDiff(merged.readFloat32(m.key), base.readFloat32(m.key))).toBeGreaterThan(
          1e-3,
        );
      }
    }
  } finally {
    applied.close();
    model.close();
  }
}

describe("SDXL kohya files (sdxl-tiny)", () => {
  const linear = (name: string, out: number, inp: number, rank: number, alpha?: number) => ({
    name,
    down: [rank, inp],
    up: [out, rank],
    alpha,
    scale: alpha === undefined ? 1 : alpha / rank,
  });
  const modules: Expected[] = [
    // Original LDM names: input_blocks.4 is down block 1's first layer, .1 its transformer.
    {
      ...linear("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q", 32, 32, 4, 8),
      component: "unet",
      key: "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight",
    },
    {
      ...linear("lora_unet_input_blocks_8_1_transformer_blocks_1_attn2_to_k", 64, 32, 2, 1),
      component: "unet",
      key: "down_blocks.2.attentions.1.transformer_blocks.1.attn2.to_k.weight",
    },
    {
      ...linear("lora_unet_middle_block_1_transformer_blocks_0_ff_net_0_proj", 512, 64, 4, 4),
      component: "unet",
      key: "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight",
    },
    {
      ...linear("lora_unet_output_blocks_2_1_proj_in", 64, 64, 4),
      component: "unet",
      key: "up_blocks.0.attentions.2.proj_in.weight",
    },
    // LoCon: a 3x3 down kernel and a 1x1 up on a resnet convolution (in_layers.2 = conv1).
    {
      name: "lora_unet_input_blocks_1_0_in_layers_2",
      down: [4, 16, 3, 3],
      up: [16, 4, 1, 1],
      alpha: 2,
      scale: 0.5,
      component: "unet",
      key: "down_blocks.0.resnets.0.conv1.weight",
    },
    {
      name: "lora_unet_output_blocks_8_0_skip_connection",
      down: [4, 32, 1, 1],
      up: [16, 4, 1, 1],
      alpha: 4,
      scale: 1,
      component: "unet",
      key: "up_blocks.2.resnets.2.conv_shortcut.weight",
    },
    // The diffusers naming in the same file.
    {
      ...linear(
        "lora_unet_down_blocks_1_attentions_1_transformer_blocks_1_attn1_to_out_0",
        32,
        32,
        4,
        8,
      ),
      component: "unet",
      key: "down_blocks.1.attentions.1.transformer_blocks.1.attn1.to_out.0.weight",
    },
    {
      ...linear("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 16, 16, 4, 8),
      component: "text_encoder",
      key: "text_model.encoder.layers.0.self_attn.q_proj.weight",
    },
    {
      ...linear("lora_te1_text_model_encoder_layers_2_mlp_fc1", 32, 16, 2, 3),
      component: "text_encoder",
      key: "text_model.encoder.layers.2.mlp.fc1.weight",
    },
    {
      ...linear("lora_te2_text_model_encoder_layers_2_self_attn_out_proj", 16, 16, 4, 8),
      component: "text_encoder_2",
      key: "text_model.encoder.layers.2.self_attn.out_proj.weight",
    },
    {
      ...linear("lora_te2_text_model_encoder_layers_1_mlp_fc2", 16, 32, 4, 2),
      component: "text_encoder_2",
      key: "text_model.encoder.layers.1.mlp.fc2.weight",
    },
  ];

  it("lands every key (LDM and diffusers names, LoCon, both encoders) and merges as float64 does", async () => {
    await checkMerges("sdxl-tiny", "sdxl", [{ modules, spelling: "kohya" }], 0.7);
  });

  it("is refused by an SD 1.x model as a LoRA for SDXL, before anything is built", async () => {
    const path = join(work, "sdxl-for-sd15.safetensors");
    writeFileSync(path, syntheticLora(modules, "kohya", 7).bytes);
    const cacheDir = join(work, "cache-family");
    const built: string[] = [];
    const error = await loadPipeline(fixturePath("pipelines", "sd15-tiny"), {
      cacheDir,
      loras: [{ path }],
      onBuild: (c) => built.push(c),
    }).catch((e: Error) => e);
    expect((error as Error).message).toMatch(
      /a LoRA for SDXL \(keys for a second text encoder\); the model .* is SD 1\.x$/,
    );
    expect((error as Error).message).not.toContain("\n");
    expect(built).toEqual([]);
  });
});

describe("SD 2.x diffusers files (sd21-tiny)", () => {
  it("reads PEFT files with adapter metadata (alpha and alpha_pattern) and both text-encoder spellings", async () => {
    const metadata = {
      lora_adapter_metadata: JSON.stringify({
        "unet.r": 4,
        "unet.lora_alpha": 8,
        "unet.alpha_pattern": { proj_out: 2 },
        "text_encoder.r": 4,
        "text_encoder.lora_alpha": 6,
      }),
    };
    const modules: Expected[] = [
      {
        name: "unet.down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_v",
        down: [4, 24],
        up: [16, 4],
        scale: 2,
        component: "unet",
        key: "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_v.weight",
      },
      {
        name: "unet.up_blocks.3.attentions.2.proj_out",
        down: [4, 16],
        up: [16, 4],
        scale: 0.5,
        component: "unet",
        key: "up_blocks.3.attentions.2.proj_out.weight",
      },
      {
        name: "unet.mid_block.resnets.1.conv2",
        down: [3, 32, 3, 3],
        up: [32, 3, 1, 1],
        scale: 8 / 3,
        component: "unet",
        key: "mid_block.resnets.1.conv2.weight",
      },
      {
        name: "text_encoder.text_model.encoder.layers.1.self_attn.k_proj",
        down: [4, 24],
        up: [24, 4],
        scale: 1.5,
        component: "text_encoder",
        key: "text_model.encoder.layers.1.self_attn.k_proj.weight",
      },
      {
        name: "text_encoder.encoder.layers.2.mlp.fc1",
        down: [4, 24],
        up: [48, 4],
        scale: 1.5,
        component: "text_encoder",
        key: "text_model.encoder.layers.2.mlp.fc1.weight",
      },
    ];
    await checkMerges("sd21-tiny", "sd2", [{ modules, spelling: "peft", metadata }], -0.8);
  });

  it("reads the older lora.down / lora_linear_layer spellings (alpha = rank without metadata)", async () => {
    const plain: Expected[] = [
      {
        name: "unet.down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2",
        down: [2, 128],
        up: [32, 2],
        scale: 1,
        component: "unet",
        key: "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.weight",
      },
    ];
    const linearLayer: Expected[] = [
      {
        name: "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
        down: [4, 24],
        up: [24, 4],
        scale: 1,
        component: "text_encoder",
        key: "text_model.encoder.layers.0.self_attn.q_proj.weight",
      },
    ];
    await checkMerges(
      "sd21-tiny",
      "sd2",
      [
        { modules: plain, spelling: "lora.down" },
        { modules: linearLayer, spelling: "lora_linear_layer" },
      ],
      1.3,
    );
  });

  it("reads attention-processor files (to_out_lora is to_out.0)", async () => {
    // The processor spelling names the projection after `processor.`: written by hand here.
    const down = Float32Array.from({ length: 4 * 16 }, (_, i) => Math.sin(i) * 0.3);
    const up = Float32Array.from({ length: 16 * 4 }, (_, i) => Math.cos(i) * 0.3);
    const at = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora";
    const tensors: Record<string, TensorToWrite> = {
      [`${at}.down.weight`]: { dtype: "F32", shape: [4, 16], data: down },
      [`${at}.up.weight`]: { dtype: "F32", shape: [16, 4], data: up },
    };
    const path = join(work, "processor.safetensors");
    writeFileSync(path, encodeSafetensors(tensors));
    const { files: model } = await openModelFiles(fixturePath("pipelines", "sd21-tiny"));
    const applied = applyLoras(model, [{ path }], { family: "sd2", onWarning: () => {} });
    try {
      const key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0.weight";
      const base = model.weights.unet!;
      const expected = mergeReference(base.readFloat32(key), 16, [{ down, up, rank: 4, scale: 1 }]);
      expect(roundingSteps(applied.files.weights.unet!.readFloat32(key), expected)).toBeLessThan(1);
    } finally {
      applied.close();
      model.close();
    }
  });
});

describe("SD 1.x kohya files with the original LDM UNet names", () => {
  it("reproduces unet.out.style@1.0 from the fixture file renamed to LDM names", async () => {
    // sd15-tiny: down block b's layer j is input_blocks.{1,4,7}[b] + j, up block b's layer j is
    // output_blocks.3b + j, the mid transformer middle_block.1.
    const rename = (key: string) =>
      key
        .replace(
          /^lora_unet_down_blocks_(\d)_attentions_(\d)_/,
          (_, b, j) => `lora_unet_input_blocks_${[1, 4, 7][+b] + +j}_1_`,
        )
        .replace(
          /^lora_unet_up_blocks_(\d)_attentions_(\d)_/,
          (_, b, j) => `lora_unet_output_blocks_${3 * +b + +j}_1_`,
        )
        .replace(/^lora_unet_mid_block_attentions_0_/, "lora_unet_middle_block_1_");
    const source = SafetensorsFile.open(fixturePath("lora", "style.kohya.safetensors"));
    const tensors: Record<string, TensorToWrite> = {};
    for (const key of source.keys()) {
      const info = source.info(key);
      tensors[rename(key)] = { dtype: info.dtype, shape: info.shape, data: source.readBytes(key) };
    }
    source.close();
    expect(Object.keys(tensors).some((k) => k.startsWith("lora_unet_input_blocks_4_1_"))).toBe(
      true,
    );
    const path = join(work, "style.ldm-names.safetensors");
    writeFileSync(path, encodeSafetensors(tensors));
    const cases = openCaseTensors("lora");
    const warnings: string[] = [];
    const pipeline = await loadPipeline(fixturePath("pipelines", "sd15-tiny"), {
      cacheDir: false,
      loras: [{ path }],
      onWarning: (m) => warnings.push(m),
    });
    try {
      expect(warnings).toEqual([]);
      const unet = await pipeline.parts.unet(undefined);
      const out = await unet.predict({
        sample: { data: cases.readFloat32("unet.sample"), dims: cases.info("unet.sample").shape },
        timestep: cases.readFloat32("unet.timestep"),
        encoderHiddenStates: {
          data: cases.readFloat32("unet.encoder_hidden_states"),
          dims: cases.info("unet.encoder_hidden_states").shape,
        },
      });
      expect(maxAbsDiff(out.data, cases.readFloat32("unet.out.style@1.0"))).toBeLessThan(1e-4);
    } finally {
      await pipeline.release();
      cases.close();
    }
  });
});

describe("stacking", () => {
  it("adds two LoRAs on the same weights, each at its own weight (one negative)", async () => {
    const kohya = SafetensorsFile.open(fixturePath("lora", "style.kohya.safetensors"));
    const second = syntheticLora(
      [
        {
          name: "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
          down: [2, 16],
          up: [16, 2],
          alpha: 1,
        },
      ],
      "kohya",
      5,
    );
    const path = join(work, "second.safetensors");
    writeFileSync(path, second.bytes);
    const { files: model } = await openModelFiles(fixturePath("pipelines", "sd15-tiny"));
    const applied = applyLoras(
      model,
      [
        { path: fixturePath("lora", "style.kohya.safetensors"), weight: 0.6 },
        { path, weight: -1.5 },
      ],
      { family: "sd1" },
    );
    try {
      const module = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
      const key = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight";
      const base = model.weights.unet!;
      const values = second.values.get(module)!;
      const expected = mergeReference(base.readFloat32(key), 16, [
        {
          down: kohya.readFloat32(`${module}.lora_down.weight`),
          up: kohya.readFloat32(`${module}.lora_up.weight`),
          rank: 4,
          scale: 0.6 * 2,
        },
        { ...values, rank: 2, scale: -1.5 * 0.5 },
      ]);
      expect(roundingSteps(applied.files.weights.unet!.readFloat32(key), expected)).toBeLessThan(1);
    } finally {
      applied.close();
      model.close();
      kohya.close();
    }
  });

  it("gives the same LoRA twice at half weight what once at full weight gives", async () => {
    const path = fixturePath("lora", "style.kohya.safetensors");
    const { files: model } = await openModelFiles(fixturePath("pipelines", "sd15-tiny"));
    const twice = applyLoras(
      model,
      [
        { path, weight: 0.5 },
        { path, weight: 0.5 },
      ],
      { family: "sd1" },
    );
    const once = applyLoras(model, [{ path, weight: 1 }], { family: "sd1" });
    try {
      expect(twice.key).not.toBe(once.key);
      for (const component of ["unet", "text_encoder"] as const) {
        const a = twice.files.weights[component]!;
        const b = once.files.weights[component]!;
        for (const key of a
          .keys()
          .filter((k) => k.endsWith("_proj.weight") || /to_[qkv]|to_out/.test(k)))
          expect(maxAbsDiff(a.readFloat32(key), b.readFloat32(key)), key).toBeLessThanOrEqual(
            2 ** -23 * Math.max(...b.readFloat32(key).map(Math.abs)),
          );
      }
    } finally {
      twice.close();
      once.close();
      model.close();
    }
  });
});
