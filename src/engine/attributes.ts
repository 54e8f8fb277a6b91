/** Typed access to an ONNX node's attributes. */
import type { NodeProto } from "../onnx/proto.js";
import { decodeTensorProto, type HostTensor } from "./host-tensor.js";

export interface Attributes {
  int(name: string, fallback: number): number;
  float(name: string, fallback: number): number;
  string(name: string, fallback: string): string;
  ints(name: string): number[] | undefined;
  tensor(name: string): HostTensor | undefined;
}

export function attributesOf(node: NodeProto): Attributes {
  const find = (name: string) => node.attribute?.find((a) => a.name === name);
  return {
    // An attribute that is present but has no value field holds 0: serializers leave default
    // values out (keepdims = 0, for one), so absence of the field is not absence of the attribute.
    int: (name, fallback) => {
      const a = find(name);
      return a ? Number(a.i ?? 0) : fallback;
    },
    float: (name, fallback) => {
      const a = find(name);
      return a ? (a.f ?? 0) : fallback;
    },
    string: (name, fallback) => {
      const s = find(name)?.s;
      return s ? new TextDecoder().decode(s) : fallback;
    },
    ints: (name) => find(name)?.ints?.map(Number),
    tensor: (name) => {
      const t = find(name)?.t;
      return t ? decodeTensorProto(t) : undefined;
    },
  };
}

/** An axis in [0, rank), from ONNX's [-rank, rank). */
export function normalizeAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= Math.max(rank, 1))
    throw new Error(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}
