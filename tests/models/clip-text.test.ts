import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseClipTextConfig } from "../../src/configs/clip-config.js";
import {
  buildClipTextEncoder,
  type ClipTextEncoderOptions,
  clipSkipHiddenState,
} from "../../src/models/clip-text.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { combineSdxlTextEmbeddings } from "../../src/pipelines/host-tensors.js";
import { createSession, int64Tensor, runFloat32 } from "../../src/runtime/session.js";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import type { WeightSource } from "../../src/weights/source.js";
import { fixturePath, maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";

interface TextEncoderCase {
  readonly pipeline: string;
  readonly encoder: string;
  readonly keys: readonly string[];
}

const TOLERANCE = 1e-4;
const cases = readCaseJson<{ cases: TextEncoderCase[] }>("text-encoders").cases;
const tensors = openCaseTensors("text-encoders");
const opened: SafetensorsFile[] = [tensors];
afterAll(() => {
  for (const file of opened) file.close();
});

/** A weight source over one component folder's `model.safetensors`. */
function componentSource(pipeline: string, encoder: string): WeightSource {
  const file = SafetensorsFile.open(
    fixturePath("pipelines", pipeline, encoder, "model.safetensors"),
  );
  opened.push(file);
  return {
    label: `${pipeline}/${encoder}`,
    keys: () => file.keys(),
    has: (key) => file.has(key),
    info: (key) => file.info(key),
    readFloat32: (key) => file.readFloat32(key),
  };
}

/** `source` plus extra in-memory tensors, or minus some keys. */
function editedSource(
  source: WeightSource,
  edit: { add?: Record<string, Float32Array>; remove?: readonly string[] },
): WeightSource {
  const removed = new Set(edit.remove ?? []);
  const added = edit.add ?? {};
  const has = (key: string) => key in added || (!removed.has(key) && source.has(key));
  return {
    label: source.label,
    keys: () => [...source.keys().filter((k) => !removed.has(k)), ...Object.keys(added)],
    has,
    info: (key) => {
      if (key in added) return { dtype: "F32", shape: [1, added[key].length] };
      if (!has(key)) throw new Error(`no ${key}`);
      return source.info(key);
    },
    readFloat32: (key) => added[key] ?? source.readFloat32(key),
  };
}

function configJson(pipeline: string, encoder: string): Record<string, unknown> {
  return JSON.parse(
    readFileSync(fixturePath("pipelines", pipeline, encoder, "config.json"), "utf8"),
  ) as Record<string, unknown>;
}

async function runEncoder(
  config: Record<string, unknown>,
  source: WeightSource,
  ids: BigInt64Array,
  dims: readonly number[],
  options: ClipTextEncoderOptions = {},
) {
  const graph = buildClipTextEncoder(parseClipTextConfig(config), source, options);
  const session = await createSession(buildModelBytes(graph));
  return runFloat32(session, { input_ids: int64Tensor(ids, dims) });
}

function caseIds(c: TextEncoderCase): BigInt64Array {
  return tensors.readBigInt64(`${c.pipeline}.${c.encoder}.input_ids`);
}

function reference(c: TextEncoderCase, output: string): Float32Array {
  return tensors.readFloat32(`${c.pipeline}.${c.encoder}.${output}`);
}

describe("buildClipTextEncoder against the reference", () => {
  for (const c of cases) {
    it(`${c.pipeline} ${c.encoder}: every output within ${TOLERANCE}`, async () => {
      const ids = caseIds(c);
      const out = await runEncoder(
        configJson(c.pipeline, c.encoder),
        componentSource(c.pipeline, c.encoder),
        ids,
        tensors.info(`${c.pipeline}.${c.encoder}.input_ids`).shape,
      );
      const names = c.keys.map((k) => k.split(".").at(-1)!).filter((n) => n !== "input_ids");
      expect(Object.keys(out).sort()).toEqual([...names].sort());
      const diffs: Record<string, number> = {};
      for (const name of names) {
        expect(out[name].dims).toEqual(tensors.info(`${c.pipeline}.${c.encoder}.${name}`).shape);
        diffs[name] = maxAbsDiff(out[name].data, reference(c, name));
      }
      console.log(`${c.pipeline}.${c.encoder} max abs diff`, diffs);
      for (const name of names) expect(diffs[name], name).toBeLessThanOrEqual(TOLERANCE);
    });
  }

  it("builds float16 graphs with float32 inputs and outputs close to the reference", async () => {
    const c = cases.find((x) => x.encoder === "text_encoder_2")!;
    const graph = buildClipTextEncoder(
      parseClipTextConfig(configJson(c.pipeline, c.encoder)),
      componentSource(c.pipeline, c.encoder),
      { dtype: "float16" },
    );
    const weights = graph.initializers.filter((i) => i.data.type.startsWith("float"));
    expect(weights.every((i) => i.data.type === "float16")).toBe(true);
    const session = await createSession(buildModelBytes(graph));
    const out = await runFloat32(session, { input_ids: int64Tensor(caseIds(c), [4, 77]) });
    // float16 activations: about 3 significant digits on values of order 1.
    for (const name of ["last_hidden_state", "penultimate_hidden_state", "text_embeds"]) {
      const diff = maxAbsDiff(out[name].data, reference(c, name));
      console.log(`float16 ${name} max abs diff`, diff);
      expect(diff, name).toBeLessThan(5e-3);
    }
  });
});

describe("buildClipTextEncoder options", () => {
  const sd15 = cases.find((c) => c.pipeline === "sd15-tiny")!;
  const sdxl2 = cases.find((c) => c.encoder === "text_encoder_2")!;

  it("truncates the graph for clip skip and still accounts for every weight", async () => {
    const source = componentSource(sd15.pipeline, sd15.encoder);
    const config = configJson(sd15.pipeline, sd15.encoder);
    const options = { hiddenStates: [clipSkipHiddenState(1, "sd")], pooled: false };
    const full = buildClipTextEncoder(parseClipTextConfig(config), source);
    const short = buildClipTextEncoder(parseClipTextConfig(config), source, options);
    expect(short.nodeCount).toBeLessThan(full.nodeCount);
    expect(short.initializers.some((i) => i.name.includes("layers.2."))).toBe(false);
    const out = await runEncoder(config, source, caseIds(sd15), [4, 77], options);
    expect(Object.keys(out)).toEqual(["prompt_embeds"]);
    expect(
      maxAbsDiff(out.prompt_embeds.data, reference(sd15, "penultimate_after_final_ln")),
    ).toBeLessThanOrEqual(TOLERANCE);
  });

  it("maps diffusers' clip skip for SD and SDXL", () => {
    expect(clipSkipHiddenState(0, "sd")).toEqual({
      name: "prompt_embeds",
      index: -1,
      finalLayerNorm: true,
    });
    expect(clipSkipHiddenState(2, "sd").index).toBe(-3);
    expect(clipSkipHiddenState(0, "sdxl")).toEqual({
      name: "prompt_embeds",
      index: -2,
      finalLayerNorm: false,
    });
    expect(clipSkipHiddenState(1, "sdxl", "h").index).toBe(-3);
    expect(() => clipSkipHiddenState(-1, "sd")).toThrow(/non-negative integer, got -1$/);
  });

  it("accepts a dynamic sequence length; causal attention keeps the prefix unchanged", async () => {
    const length = 10;
    const full = caseIds(sdxl2);
    const ids = new BigInt64Array(4 * length);
    for (let b = 0; b < 4; b++) ids.set(full.subarray(b * 77, b * 77 + length), b * length);
    const out = await runEncoder(
      configJson(sdxl2.pipeline, sdxl2.encoder),
      componentSource(sdxl2.pipeline, sdxl2.encoder),
      ids,
      [4, length],
      { sequenceLength: "dynamic" },
    );
    expect(out.last_hidden_state.dims).toEqual([4, length, 16]);
    const expected = reference(sdxl2, "last_hidden_state");
    const prefix = new Float32Array(4 * length * 16);
    for (let b = 0; b < 4; b++) {
      prefix.set(expected.subarray(b * 77 * 16, (b * 77 + length) * 16), b * length * 16);
    }
    expect(maxAbsDiff(out.last_hidden_state.data, prefix)).toBeLessThanOrEqual(TOLERANCE);
  });

  it("pools at the first eos_token_id position when the config is not legacy", async () => {
    // Token 320 ("a") occurs at position 1 of the first prompt and 4 times in the third; the
    // legacy rule (argmax of the ids) would pick the end-of-text token instead.
    const config = { ...configJson(sd15.pipeline, sd15.encoder), eos_token_id: 320 };
    const ids = caseIds(sd15);
    const out = await runEncoder(
      config,
      componentSource(sd15.pipeline, sd15.encoder),
      ids,
      [4, 77],
    );
    const last = out.last_hidden_state.data;
    for (let b = 0; b < 4; b++) {
      const row = Array.from(ids.subarray(b * 77, (b + 1) * 77));
      const found = row.indexOf(320n);
      const position = Math.max(found, 0); // no match: the first position, as argmax of zeros
      const expected = last.subarray((b * 77 + position) * 16, (b * 77 + position + 1) * 16);
      expect(maxAbsDiff(out.pooler_output.data.subarray(b * 16, (b + 1) * 16), expected)).toBe(0);
    }
    expect(Array.from(ids.subarray(0, 77)).indexOf(320n)).toBe(1);
  });

  it("declares and ignores a position_ids buffer of older exports", async () => {
    const positions = new Float32Array(77).map((_, i) => i + 0.5); // corrupted values are ignored
    const source = editedSource(componentSource(sd15.pipeline, sd15.encoder), {
      add: { "text_model.embeddings.position_ids": positions },
    });
    const out = await runEncoder(
      configJson(sd15.pipeline, sd15.encoder),
      source,
      caseIds(sd15),
      [4, 77],
    );
    expect(
      maxAbsDiff(out.last_hidden_state.data, reference(sd15, "last_hidden_state")),
    ).toBeLessThanOrEqual(TOLERANCE);
  });

  it("infers the projection from the weights when the config names no architecture", () => {
    const { architectures: _, ...config } = configJson(sdxl2.pipeline, sdxl2.encoder);
    const graph = buildClipTextEncoder(
      parseClipTextConfig(config),
      componentSource(sdxl2.pipeline, sdxl2.encoder),
    );
    expect(graph.toGraphProto().output.map((o) => o.name)).toContain("text_embeds");
  });

  it("reports missing and unused weights", () => {
    const config = parseClipTextConfig(configJson(sd15.pipeline, sd15.encoder));
    const source = componentSource(sd15.pipeline, sd15.encoder);
    const missing = editedSource(source, { remove: ["text_model.encoder.layers.1.mlp.fc2.bias"] });
    expect(() => buildClipTextEncoder(config, missing)).toThrow(
      /missing weight "text_model\.encoder\.layers\.1\.mlp\.fc2\.bias"$/,
    );
    const extra = editedSource(source, { add: { "text_projection.weight": new Float32Array(4) } });
    expect(() => buildClipTextEncoder(config, extra)).toThrow(
      /1 unused weight\(s\): text_projection\.weight$/,
    );
    const sdxlSource = componentSource(sdxl2.pipeline, sdxl2.encoder);
    const sdxlConfig = parseClipTextConfig(configJson(sdxl2.pipeline, sdxl2.encoder));
    expect(() => buildClipTextEncoder(sdxlConfig, sdxlSource, { projection: false })).toThrow(
      /unused weight\(s\): text_projection\.weight$/,
    );
    const wrongWidth = parseClipTextConfig({
      ...configJson(sd15.pipeline, sd15.encoder),
      hidden_size: 32,
    });
    expect(() => buildClipTextEncoder(wrongWidth, source)).toThrow(
      /has shape \[49408,16\], expected \[49408,32\]$/,
    );
  });

  it("rejects bad output requests with one line", () => {
    const config = parseClipTextConfig(configJson(sd15.pipeline, sd15.encoder));
    const source = componentSource(sd15.pipeline, sd15.encoder);
    const build = (options: ClipTextEncoderOptions) => () =>
      buildClipTextEncoder(config, source, options);
    expect(build({ hiddenStates: [{ name: "h", index: -5, finalLayerNorm: false }] })).toThrow(
      /^hidden state index -5 for "h" is out of range for 3 layers \(valid: -4\.\.3\)$/,
    );
    expect(
      build({ hiddenStates: [{ name: "pooler_output", index: 0, finalLayerNorm: false }] }),
    ).toThrow(/^output name "pooler_output" is used twice$/);
    expect(build({ hiddenStates: [], pooled: false })).toThrow(/needs at least one output$/);
    expect(build({ sequenceLength: 78 })).toThrow(
      /^sequence length 78 is not in 1\.\.77 \(max_position_embeddings\)$/,
    );
  });

  it("outputs the embeddings themselves as hidden state 0", async () => {
    const source = componentSource(sd15.pipeline, sd15.encoder);
    const config = configJson(sd15.pipeline, sd15.encoder);
    const ids = BigInt64Array.from([49406n, 320n]);
    const out = await runEncoder(config, source, ids, [1, 2], {
      sequenceLength: "dynamic",
      hiddenStates: [{ name: "embeddings", index: 0, finalLayerNorm: false }],
      pooled: false,
    });
    const token = source.readFloat32("text_model.embeddings.token_embedding.weight");
    const position = source.readFloat32("text_model.embeddings.position_embedding.weight");
    const expected = new Float32Array(32);
    for (let s = 0; s < 2; s++) {
      for (let c = 0; c < 16; c++) {
        expected[s * 16 + c] = token[Number(ids[s]) * 16 + c] + position[s * 16 + c];
      }
    }
    expect(maxAbsDiff(out.embeddings.data, expected)).toBeLessThan(1e-7);
  });
});

describe("parseClipTextConfig", () => {
  it("reads the fixture configs and fills transformers' defaults", () => {
    const config = parseClipTextConfig(configJson("sdxl-tiny", "text_encoder_2"));
    expect(config).toEqual({
      vocabSize: 49408,
      hiddenSize: 16,
      intermediateSize: 32,
      projectionDim: 16,
      numHiddenLayers: 3,
      numAttentionHeads: 4,
      maxPositionEmbeddings: 77,
      hiddenAct: "gelu",
      layerNormEps: 1e-5,
      eosTokenId: 2,
      architecture: "CLIPTextModelWithProjection",
    });
    expect(parseClipTextConfig({})).toMatchObject({
      hiddenSize: 512,
      numHiddenLayers: 12,
      hiddenAct: "quick_gelu",
      eosTokenId: 49407,
      architecture: undefined,
    });
    const full = JSON.parse(
      readFileSync(
        join(fixturePath("configs", "full", "sdxl", "text_encoder_2"), "config.json"),
        "utf8",
      ),
    ) as unknown;
    expect(parseClipTextConfig(full)).toMatchObject({ hiddenSize: 1280, numHiddenLayers: 32 });
  });

  it("rejects unsupported values with one line naming the field", () => {
    expect(() => parseClipTextConfig({ hidden_act: "relu" })).toThrow(
      /^text encoder config: unsupported value for hidden_act: "relu"$/,
    );
    expect(() => parseClipTextConfig({ model_type: "clip" }, "te/config.json")).toThrow(
      /^te\/config\.json: unsupported value for model_type: "clip"$/,
    );
    expect(() => parseClipTextConfig({ architectures: ["T5EncoderModel"] })).toThrow(
      /unsupported value for architectures: \["T5EncoderModel"\]$/,
    );
    expect(() => parseClipTextConfig({ num_hidden_layers: 2.5 })).toThrow(
      /invalid value for num_hidden_layers: 2\.5 \(expected an integer >= 1\)$/,
    );
    expect(() => parseClipTextConfig({ hidden_size: "768" })).toThrow(
      /invalid value for hidden_size: "768" \(expected an integer >= 1\)$/,
    );
    expect(() => parseClipTextConfig({ hidden_size: 10, num_attention_heads: 4 })).toThrow(
      /hidden_size = 10 is not divisible by num_attention_heads = 4$/,
    );
    expect(() => parseClipTextConfig({ layer_norm_eps: 0 })).toThrow(
      /invalid value for layer_norm_eps: 0 \(expected a positive number\)$/,
    );
    expect(() => parseClipTextConfig([])).toThrow(/expected a JSON object$/);
  });
});

describe("combineSdxlTextEmbeddings", () => {
  it("concatenates the two encoders' states along the channels", () => {
    const first = { data: Float32Array.from([1, 2, 3, 4]), dims: [1, 2, 2] };
    const second = { data: Float32Array.from([5, 6, 7, 8, 9, 10]), dims: [1, 2, 3] };
    const combined = combineSdxlTextEmbeddings(first, second);
    expect(combined.dims).toEqual([1, 2, 5]);
    expect(Array.from(combined.data)).toEqual([1, 2, 5, 6, 7, 3, 4, 8, 9, 10]);
    expect(() =>
      combineSdxlTextEmbeddings(first, { data: new Float32Array(3), dims: [1, 1, 3] }),
    ).toThrow(/equal B and S, got \[1,2,2\] and \[1,1,3\]$/);
  });
});
