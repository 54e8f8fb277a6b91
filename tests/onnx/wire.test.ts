// The eval-free ONNX reader (src/onnx/wire.ts) against protobufjs's generated decoder, on every
// ONNX model among the fixtures (exported by PyTorch: doc strings, value infos, subgraphs,
// negative and 64-bit attribute values) and on one this project writes; and on broken input.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { attr, GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { decodeModel, ONNX_SCHEMA } from "../../src/onnx/proto.js";
import { decodeWire, type WireSchema } from "../../src/onnx/wire.js";
import { FIXTURES } from "../fixtures.js";

const modelType = protobuf.Root.fromJSON(ONNX_SCHEMA).lookupType("onnx.ModelProto");
const schema: WireSchema = ONNX_SCHEMA.nested.onnx.nested;

function onnxFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return onnxFiles(path);
    return name.endsWith(".onnx") ? [path] : [];
  });
}

/**
 * The first path where `a` (ours) and `b` (protobufjs's) differ, bytes compared by content, or
 * undefined. protobufjs leaves out a scalar the file writes explicitly with its default value
 * (PyTorch's exporter writes an INT attribute's `i: 0`); ours keeps it, and readers take an
 * absent value as that default, so the two agree there.
 */
function difference(a: unknown, b: unknown, path = "model"): string | undefined {
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    if (a.byteLength !== b.byteLength) return `${path}: ${a.byteLength} vs ${b.byteLength} bytes`;
    return Buffer.compare(
      Buffer.from(a.buffer, a.byteOffset, a.byteLength),
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    ) === 0
      ? undefined
      : `${path}: bytes differ`;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    if (a.length !== b.length) return `${path}: length ${a.length} vs ${b.length}`;
    for (let i = 0; i < a.length; i++) {
      const d = difference(a[i], b[i], `${path}[${i}]`);
      if (d) return d;
    }
    return undefined;
  }
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const key of keys) {
      const d = difference(
        (a as Record<string, unknown>)[key],
        (b as Record<string, unknown>)[key],
        `${path}.${key}`,
      );
      if (d) return d;
    }
    return undefined;
  }
  if (b === undefined && (a === 0 || a === "")) return undefined;
  return Object.is(a, b) ? undefined : `${path}: ${String(a)} vs ${String(b)}`;
}

function expectSameAsProtobufjs(bytes: Uint8Array, label: string): void {
  const expected = modelType.toObject(modelType.decode(bytes), {
    longs: Number,
    arrays: true,
    defaults: false,
  });
  expect(difference(decodeWire(schema, "ModelProto", bytes), expected), label).toBeUndefined();
}

describe("the eval-free ONNX reader", () => {
  const files = onnxFiles(join(FIXTURES, "onnx"));

  it("reads every fixture model as protobufjs does", () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
    for (const file of files) expectSameAsProtobufjs(readFileSync(file), file);
  });

  it("reads what this project writes: 64-bit and negative integers, floats, strings, subgraphs", () => {
    const g = new GraphBuilder();
    const x = g.input("x", "float32", [2, 3]);
    const sliced = g.slice(x, [-1], [2 ** 62], [1]);
    const w = g.weight("w", [3, 2], () => Float32Array.of(1.5, -2, 0.25, 3e-8, -0, 7));
    const y = g.op("Gemm", [sliced, w], { alpha: attr.float(0.5), transB: attr.int(0) });
    g.output(y, "y", "float32");
    const bytes = buildModelBytes(g, { metadata: { "todo-sd:test": "ünïcode" } });
    expectSameAsProtobufjs(bytes, "built");
    // Weights are views into the bytes read, not copies.
    const model = decodeModel(bytes);
    const raw = model.graph.initializer?.[0]?.rawData;
    expect(raw?.buffer).toBe(bytes.buffer);
  });

  it("refuses truncated or corrupt bytes in one line", () => {
    const bytes = readFileSync(files[0]);
    expect(() => decodeModel(bytes.subarray(0, 1000), "cut.onnx")).toThrow(
      /^cut\.onnx: not a valid ONNX model \((length past the end of the message|truncated [a-z0-9]+) at byte \d+\)$/,
    );
    // An unknown field (99) of wire type 7, which protobuf does not define; and a known one
    // (ir_version, a varint) written as a 32-bit value.
    expect(() => decodeModel(Uint8Array.of(0x9f, 0x06, 1, 2), "junk.onnx")).toThrow(
      /^junk\.onnx: not a valid ONNX model \(unsupported wire type 7 at byte 2\)$/,
    );
    expect(() => decodeModel(Uint8Array.of(0x0d, 1, 2, 3, 4), "junk.onnx")).toThrow(
      /^junk\.onnx: not a valid ONNX model \(int64 field with wire type 5 at byte 1\)$/,
    );
  });
});
