import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { attr, GraphBuilder, MS_DOMAIN } from "../../src/onnx/builder.js";
import {
  buildModelBytes,
  externalDataPath,
  readModel,
  saveModel,
  writeModel,
} from "../../src/onnx/model-io.js";
import { decodeModel, encodeModel, TensorDataType } from "../../src/onnx/proto.js";
import { createSession, float32Tensor, runFloat32 } from "../../src/runtime/session.js";
import { float16BitsToFloat32, float32ToFloat16Bits } from "../../src/util/float16.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-onnx-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** y = softmax(x W + b) over a [2,3] input, W [3,4]. */
function smallModel(floatType: "float32" | "float16" = "float32") {
  const g = new GraphBuilder(floatType);
  const x = g.input("x", "float32", ["batch", 3]);
  const w = g.weight("w", [3, 4], () =>
    Float32Array.from([1, 0, -1, 0.5, 2, 1, 0, -0.5, 0, 3, 1, 1]),
  );
  const b = g.weight("b", [4], () => Float32Array.from([0.1, 0.2, 0.3, 0.4]));
  const y = g.softmax(g.add(g.matMul(g.castToFloat(x), w), b));
  g.output(g.cast(y, "float32"), "y", "float32", ["batch", 4]);
  return g;
}

/** y = unsqueeze(reshape(x W)) with a 3.6 KB weight and small shape constants. */
function shapesModel() {
  const g = new GraphBuilder();
  const x = g.input("x", "float32", [2, 3]);
  const w = g.weight("w", [3, 300], () => new Float32Array(900).fill(0.5));
  const y = g.reshape(g.matMul(x, w), [2, 30, 10]);
  g.output(g.unsqueeze(y, [0]), "y", "float32", [1, 2, 30, 10]);
  return g;
}

function reference(x: number[]): number[] {
  const w = [1, 0, -1, 0.5, 2, 1, 0, -0.5, 0, 3, 1, 1];
  const b = [0.1, 0.2, 0.3, 0.4];
  const out: number[] = [];
  for (let r = 0; r < x.length / 3; r++) {
    const z = [0, 1, 2, 3].map(
      (j) => b[j] + [0, 1, 2].reduce((s, k) => s + x[r * 3 + k] * w[k * 4 + j], 0),
    );
    const m = Math.max(...z);
    const e = z.map((v) => Math.exp(v - m));
    const sum = e.reduce((a, c) => a + c, 0);
    out.push(...e.map((v) => v / sum));
  }
  return out;
}

describe("GraphBuilder", () => {
  const input = [0.5, -1, 2, 1, 1, 1];

  it("builds a model that onnxruntime runs with the expected numbers", async () => {
    const session = await createSession(buildModelBytes(smallModel()));
    const out = await runFloat32(session, { x: float32Tensor(Float32Array.from(input), [2, 3]) });
    expect(out.y.dims).toEqual([2, 4]);
    const expected = reference(input);
    for (const [i, v] of out.y.data.entries()) expect(v).toBeCloseTo(expected[i], 6);
  });

  it("stores float16 initializers when the graph is float16", async () => {
    const bytes = buildModelBytes(smallModel("float16"));
    const model = decodeModel(bytes);
    const w = model.graph.initializer?.find((t) => t.name === "w");
    expect(w?.dataType).toBe(TensorDataType.FLOAT16);
    expect(w?.rawData?.byteLength).toBe(12 * 2);
    const session = await createSession(bytes);
    const out = await runFloat32(session, { x: float32Tensor(Float32Array.from(input), [2, 3]) });
    const expected = reference(input);
    for (const [i, v] of out.y.data.entries()) expect(v).toBeCloseTo(expected[i], 2);
  });

  it("round-trips a model through encode and decode", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "float32", [1, 4, 8, 8]);
    const y = g.op("Resize", [x, "", g.float([1, 1, 2, 2], [4], "float32")], {
      mode: attr.string("nearest"),
    });
    const z = g.op(
      "MultiHeadAttention",
      [g.reshape(y, [1, 256, 4]), g.reshape(y, [1, 256, 4])],
      { num_heads: attr.int(2) },
      { domain: MS_DOMAIN },
    );
    g.output(z, "z", "float32", [1, 256, 4]);
    const model = decodeModel(buildModelBytes(g, { metadata: { "todo-sd.reduction": "{}" } }));
    expect(model.graph.node.map((n) => n.opType)).toEqual([
      "Resize",
      "Reshape",
      "Reshape",
      "MultiHeadAttention",
      "Identity",
    ]);
    const resize = model.graph.node[0];
    expect(resize.input).toEqual(["x", "", expect.stringMatching(/^const_f/)]);
    expect(new TextDecoder().decode(resize.attribute?.[0].s)).toBe("nearest");
    expect(model.graph.node[3].domain).toBe(MS_DOMAIN);
    expect(model.graph.node[3].attribute?.[0].i).toBe(2);
    expect(model.opsetImport).toEqual([
      { domain: "", version: 17 },
      { domain: MS_DOMAIN, version: 1 },
    ]);
    expect(model.metadataProps).toEqual([{ key: "todo-sd.reduction", value: "{}" }]);
    expect(model.graph.input[0].type?.tensorType?.shape?.dim.map((d) => d.dimValue)).toEqual([
      1, 4, 8, 8,
    ]);
    // A second encode of the decoded message gives the same bytes.
    const again = encodeModel(model);
    expect(decodeModel(again)).toEqual(model);
  });

  it("deduplicates constants and names repeated scopes uniquely", () => {
    const g = new GraphBuilder();
    expect(g.int64([1, 2])).toBe(g.int64([1, 2]));
    expect(g.int64([1, 2])).not.toBe(g.int64([2, 1]));
    const x = g.input("x", "float32", [1]);
    const a = g.scope("block", () => g.sigmoid(x));
    const b = g.scope("block", () => g.sigmoid(x));
    expect(a.name).toBe("block/Sigmoid");
    expect(b.name).not.toBe(a.name);
  });

  it("rejects bytes that are not a model with a clear error", () => {
    expect(() => decodeModel(Uint8Array.from([0x0a, 0xff, 0xff, 0xff]), "broken.onnx")).toThrow(
      /^broken\.onnx: not a valid ONNX model/,
    );
  });
});

describe("model files", () => {
  it("keeps small constants inline so a model with shape constants loads from external data", async () => {
    const path = join(work, "shapes.onnx");
    const files = saveModel(shapesModel(), path, { externalData: "always" });
    expect(files).toEqual([path, externalDataPath(path)]);
    expect(externalDataPath(path)).toBe(join(work, "shapes.onnx_data"));
    const model = readModel(path, false);
    const external = (model.graph.initializer ?? []).filter((t) => t.dataLocation === 1);
    expect(external.map((t) => t.name)).toEqual(["w"]);
    expect(external[0].externalData?.find((e) => e.key === "location")?.value).toBe(
      "shapes.onnx_data",
    );
    const session = await createSession(path);
    const out = await runFloat32(session, {
      x: float32Tensor(new Float32Array(6).fill(1), [2, 3]),
    });
    expect(out.y.dims).toEqual([1, 2, 30, 10]);
    expect(out.y.data[0]).toBeCloseTo(1.5, 6);
    // Reading with external data resolves the weights back inline.
    const loaded = readModel(path);
    const w = loaded.graph.initializer?.find((t) => t.name === "w");
    expect(w?.dataLocation).toBeUndefined();
    expect(new Float32Array(Uint8Array.from(w?.rawData ?? []).buffer)[899]).toBe(0.5);
  });

  it("writes a decoded model back with external data and inline again", async () => {
    const inline = join(work, "inline.onnx");
    saveModel(smallModel(), inline);
    const model = readModel(inline);
    const big = join(work, "rewritten.onnx");
    writeModel(model, big, "always");
    // Tensors under 1 KiB stay inline; the model still loads.
    const session = await createSession(big);
    const out = await runFloat32(session, {
      x: float32Tensor(Float32Array.from([1, 1, 1]), [1, 3]),
    });
    expect(out.y.dims).toEqual([1, 4]);
    expect(readModel(inline).graph.initializer?.every((t) => t.dataLocation !== 1)).toBe(true);
  });

  it("leaves no file behind when a weight cannot be produced", () => {
    const dir = mkdtempSync(join(work, "fail-"));
    const g = new GraphBuilder();
    const x = g.input("x", "float32", [1]);
    g.initializer("bad", {
      type: "float32",
      dims: [1],
      bytes: () => {
        throw new Error("weight read failed");
      },
    });
    g.output(x, "y", "float32", [1]);
    expect(() => saveModel(g, join(dir, "m.onnx"), { externalData: "always" })).toThrow(
      "weight read failed",
    );
    expect(() => saveModel(g, join(dir, "m.onnx"))).toThrow("weight read failed");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("names a missing external data file", () => {
    const path = join(work, "lost.onnx");
    saveModel(shapesModel(), path, { externalData: "always" });
    rmSync(externalDataPath(path));
    expect(() => readModel(path)).toThrow(
      /lost\.onnx: external data file lost\.onnx_data is missing/,
    );
  });

  it("reads external weights tensor by tensor and names one cut off by a truncated file", () => {
    const path = join(work, "cut.onnx");
    saveModel(shapesModel(), path, { externalData: "always" });
    const data = externalDataPath(path);
    const whole = readFileSync(data);
    // Every external byte comes back in place.
    const w = readModel(path).graph.initializer?.find((t) => t.name === "w");
    expect(Uint8Array.from(w?.rawData ?? [])).toEqual(new Uint8Array(whole.subarray(0, 3600)));
    writeFileSync(data, whole.subarray(0, whole.byteLength - 4));
    expect(() => readModel(path)).toThrow(
      /cut\.onnx: tensor "w" runs past the end of cut\.onnx_data/,
    );
  });

  it("names an unreadable model file", () => {
    expect(() => readModel(join(work, "nope.onnx"))).toThrow(/nope\.onnx: cannot read \(ENOENT\)/);
    const junk = join(work, "junk.onnx");
    writeFileSync(junk, "this is not protobuf at all");
    expect(() => readModel(junk)).toThrow(/junk\.onnx: not a valid ONNX model/);
    expect(statSync(junk).size).toBeGreaterThan(0);
  });
});

describe("float16", () => {
  it("rounds to nearest even and keeps specials", () => {
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(1);
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie rounds to even
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(Number.NaN)))).toBe(true);
    for (let bits = 0; bits < 0x7c00; bits += 97) {
      expect(float32ToFloat16Bits(float16BitsToFloat32(bits))).toBe(bits);
    }
  });
});
