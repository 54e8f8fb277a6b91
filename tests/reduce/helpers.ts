// Shared helpers for the token-reduction tests: torch reference vectors and one-shot sessions.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import type { NodeProto } from "../../src/onnx/proto.js";
import { createSession, type OrtTensor, ort } from "../../src/runtime/session.js";

export interface ResampleVector {
  readonly height: number;
  readonly width: number;
  readonly factor: number;
  readonly input: string;
  readonly modes: Readonly<Record<string, { down: string; up: string }>>;
}

export interface TomeVector {
  readonly height: number;
  readonly width: number;
  readonly strideX: number;
  readonly strideY: number;
  readonly ratio: number;
  readonly merged: number;
  readonly input: string;
  readonly roundtrip: string;
  readonly attended: string;
}

export interface TorchVectors {
  readonly torch: string;
  readonly resample: readonly ResampleVector[];
  readonly tome: readonly TomeVector[];
}

export function torchVectors(): TorchVectors {
  const path = join(import.meta.dirname, "vectors", "torch-vectors.json");
  return JSON.parse(readFileSync(path, "utf8")) as TorchVectors;
}

export function decodeFloat32(base64: string): Float32Array {
  const bytes = Buffer.from(base64, "base64");
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

export function int64Scalar(value: number): OrtTensor {
  return new ort.Tensor("int64", BigInt64Array.from([BigInt(value)]), []);
}

export function float32(data: Float32Array | number[], dims: readonly number[]): OrtTensor {
  return new ort.Tensor("float32", Float32Array.from(data), dims);
}

/** Builds the model of `g`, runs it once and returns every output as numbers. */
export async function runGraph(
  g: GraphBuilder,
  feeds: Readonly<Record<string, OrtTensor>>,
): Promise<Record<string, { data: Float32Array; dims: readonly number[] }>> {
  const session = await createSession(buildModelBytes(g), { intraOpThreads: 1 });
  const results = await session.run(feeds);
  const out: Record<string, { data: Float32Array; dims: readonly number[] }> = {};
  for (const [name, tensor] of Object.entries(results)) {
    const data = tensor.data;
    out[name] = {
      data:
        data instanceof Float32Array
          ? data
          : Float32Array.from(Array.from(data as ArrayLike<number | bigint>, Number)),
      dims: tensor.dims,
    };
  }
  await session.release();
  return out;
}

/** Every node of a graph and of its subgraphs. */
export function allNodes(nodes: readonly NodeProto[]): NodeProto[] {
  const out: NodeProto[] = [];
  for (const node of nodes) {
    out.push(node);
    for (const a of node.attribute ?? []) if (a.g) out.push(...allNodes(a.g.node));
  }
  return out;
}
