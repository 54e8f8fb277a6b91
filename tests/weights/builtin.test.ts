import { describe, expect, it } from "vitest";
import { readConfigFile } from "../../src/configs/config-json.js";
import { float16ArrayToFloat32 } from "../../src/util/float16.js";
import {
  BUILTIN_NAMES,
  builtinName,
  componentWeightShapes,
  familyConfigs,
  openBuiltin,
  RandomWeightSource,
  streamSeed,
} from "../../src/weights/builtin.js";
import { componentClassName } from "../../src/weights/model-files.js";
import { parameterCount } from "../../src/weights/weight-modules.js";
import { fixturePath } from "../fixtures.js";

/** Byte equality of two typed arrays (vitest's deep equality is slow on large arrays). */
function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

/** The recorded full config, without fields that describe its writing rather than the model. */
function recordedConfig(family: string, component: string): Record<string, unknown> {
  const config = readConfigFile(fixturePath("configs", "full", family, component, "config.json"));
  const { _use_default_values: _, transformers_version: __, ...rest } = config;
  return rest;
}

describe("builtin configs", () => {
  const cases = [
    ["sd15", ["unet", "vae", "text_encoder"]],
    ["sd21", ["unet", "vae", "text_encoder"]],
    ["sdxl", ["unet", "vae", "text_encoder", "text_encoder_2"]],
  ] as const;
  for (const [name, components] of cases) {
    it(`builtin:${name} carries the recorded full-size configs`, () => {
      const files = openBuiltin(`builtin:${name}`);
      expect(Object.keys(files.configs).sort()).toEqual([...components].sort());
      for (const component of components) {
        expect(files.configs[component]).toEqual(recordedConfig(name, component));
      }
    });
  }

  it("names the family and the component classes", () => {
    const sdxl = openBuiltin("builtin:sdxl");
    expect(sdxl.family).toBe("sdxl");
    expect(sdxl.modelIndex?.className).toBe("StableDiffusionXLPipeline");
    expect(componentClassName(sdxl, "text_encoder")).toBe("CLIPTextModel");
    expect(componentClassName(sdxl, "text_encoder_2")).toBe("CLIPTextModelWithProjection");
    expect(openBuiltin("sd21").family).toBe("sd2");
    expect(openBuiltin("builtin:sd15").modelIndex?.className).toBe("StableDiffusionPipeline");
  });

  it("hands out copies that callers may change", () => {
    const first = openBuiltin("builtin:sd15");
    (first.configs.unet as Record<string, unknown>).sample_size = 1;
    expect(openBuiltin("builtin:sd15").configs.unet?.sample_size).toBe(64);
    expect(familyConfigs("sd1").unet?.sample_size).toBe(64);
  });

  it("rejects unknown names in one line listing the known ones", () => {
    expect(builtinName("builtin:sd3")).toBeUndefined();
    expect(builtinName("toString")).toBeUndefined();
    expect(() => openBuiltin("builtin:sd3")).toThrow(
      /^unknown builtin model "builtin:sd3" \(known: builtin:sd15, builtin:sd21, builtin:sdxl\)$/,
    );
    expect(BUILTIN_NAMES).toEqual(["builtin:sd15", "builtin:sd21", "builtin:sdxl"]);
  });
});

describe("builtin weights", () => {
  it("have the full-size key sets and parameter counts", () => {
    const sd15 = openBuiltin("builtin:sd15");
    const unetShapes = new Map(
      sd15.weights.unet!.keys().map((k) => [k, sd15.weights.unet!.info(k).shape]),
    );
    expect(parameterCount(unetShapes)).toBe(859_520_964);
    const sdxl = openBuiltin("builtin:sdxl");
    const sdxlShapes = new Map(
      sdxl.weights.unet!.keys().map((k) => [k, sdxl.weights.unet!.info(k).shape]),
    );
    expect(parameterCount(sdxlShapes)).toBe(2_567_463_684);
    expect(sdxl.weights.text_encoder_2!.info("text_projection.weight").shape).toEqual([1280, 1280]);
    expect(openBuiltin("builtin:sd21").weights.text_encoder!.keys()).toHaveLength(2 + 23 * 16 + 2);
  });

  it("are float16, deterministic per seed and independent of read order", () => {
    const key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    const a = openBuiltin("builtin:sd15", { seed: 7 }).weights.unet!;
    const b = openBuiltin("builtin:sd15", { seed: 7 }).weights.unet!;
    const c = openBuiltin("builtin:sd15", { seed: 8 }).weights.unet!;
    expect(a.info(key)).toEqual({ dtype: "F16", shape: [640, 768] });
    b.readFloat32("conv_in.weight"); // a different read history must not matter
    const first = a.readFloat16!(key)!;
    expect(sameBits(b.readFloat16!(key)!, first)).toBe(true);
    expect(sameBits(a.readFloat16!(key)!, first)).toBe(true);
    expect(sameBits(c.readFloat16!(key)!, first)).toBe(false);
    expect(sameBits(a.readFloat32(key), float16ArrayToFloat32(first))).toBe(true);
    // Tensors of the same shape get different values.
    const other = a.readFloat16!(
      "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v.weight",
    )!;
    expect(sameBits(other, first)).toBe(false);
  });

  it("keep activations of order one: variance 1/fan_in, norms 1, biases 0", () => {
    const unet = openBuiltin("builtin:sd15").weights.unet!;
    const conv = unet.readFloat32("down_blocks.2.resnets.0.conv1.weight"); // [1280, 640, 3, 3]
    const fanIn = 640 * 9;
    let sum = 0;
    let sumSquares = 0;
    let maxAbs = 0;
    for (const v of conv) {
      sum += v;
      sumSquares += v * v;
      maxAbs = Math.max(maxAbs, Math.abs(v));
    }
    const mean = sum / conv.length;
    const variance = sumSquares / conv.length - mean * mean;
    expect(Math.abs(mean)).toBeLessThan(1e-4);
    expect(variance * fanIn).toBeGreaterThan(0.98);
    expect(variance * fanIn).toBeLessThan(1.02);
    expect(maxAbs).toBeLessThanOrEqual(Math.sqrt(3 / fanIn) * 1.001);
    expect(new Set(unet.readFloat32("down_blocks.2.resnets.0.norm1.weight"))).toEqual(new Set([1]));
    expect(new Set(unet.readFloat32("down_blocks.2.resnets.0.conv1.bias"))).toEqual(new Set([0]));
    expect(
      new Set(unet.readFloat32("mid_block.attentions.0.transformer_blocks.0.norm3.bias")),
    ).toEqual(new Set([0]));
  });
});

describe("RandomWeightSource", () => {
  it("handles odd element counts and unknown keys", () => {
    const source = new RandomWeightSource("test", new Map([["odd.weight", [3, 5]]]), 1);
    expect(source.readFloat32("odd.weight")).toHaveLength(15);
    expect(source.readFloat32("odd.weight").every((v) => v !== 0 && Math.abs(v) <= 1)).toBe(true);
    expect(() => source.readFloat32("nope")).toThrow(/^test: no weight named "nope"$/);
    expect(() => new RandomWeightSource("test", new Map(), -1)).toThrow(
      /seed must be a non-negative integer/,
    );
  });

  it("derives distinct 53-bit stream seeds from seed and key", () => {
    const seeds = new Set<number>();
    for (const seed of [0, 1, 2 ** 40]) {
      for (const key of ["a", "b", "ab", "down_blocks.0.resnets.0.conv1.weight"]) {
        const value = streamSeed(seed, key);
        expect(Number.isSafeInteger(value) && value >= 0).toBe(true);
        seeds.add(value);
      }
    }
    expect(seeds.size).toBe(12);
  });

  it("covers every component's key set", () => {
    for (const name of ["sd15", "sd21", "sdxl"]) {
      const files = openBuiltin(name);
      for (const [component, source] of Object.entries(files.weights)) {
        const expected = componentWeightShapes(
          component as "unet",
          files.configs[component as "unet"]!,
        );
        expect(source.keys()).toEqual([...expected.keys()]);
      }
    }
  });
});
