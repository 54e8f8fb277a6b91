/**
 * Initializer data as the graph builder holds it: a description plus a producer that makes the
 * bytes only when the model is serialised, so a builder can describe a multi-gigabyte model
 * while holding one tensor at a time.
 */
import { float32ArrayToFloat16 } from "../util/float16.js";
import { TensorDataType } from "./proto.js";

export type ElementType = "float32" | "float16" | "int64" | "int32" | "bool" | "uint8";

export const ELEMENT_TYPES: Readonly<Record<ElementType, { dataType: number; bytes: number }>> =
  Object.freeze({
    float32: { dataType: TensorDataType.FLOAT, bytes: 4 },
    float16: { dataType: TensorDataType.FLOAT16, bytes: 2 },
    int64: { dataType: TensorDataType.INT64, bytes: 8 },
    int32: { dataType: TensorDataType.INT32, bytes: 4 },
    bool: { dataType: TensorDataType.BOOL, bytes: 1 },
    uint8: { dataType: TensorDataType.UINT8, bytes: 1 },
  });

export function elementTypeOf(dataType: number): ElementType {
  for (const [name, info] of Object.entries(ELEMENT_TYPES)) {
    if (info.dataType === dataType) return name as ElementType;
  }
  throw new Error(`unsupported ONNX tensor data type ${dataType}`);
}

export interface InitializerData {
  readonly type: ElementType;
  readonly dims: readonly number[];
  /** Little-endian bytes of the tensor; called once, when the model is written. */
  bytes(): Uint8Array;
}

export function byteLengthOf(data: InitializerData): number {
  return data.dims.reduce((a, b) => a * b, 1) * ELEMENT_TYPES[data.type].bytes;
}

function asBytes(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Float data stored as `type` (float32 or float16); `values` is called lazily. */
export function floatData(
  dims: readonly number[],
  type: "float32" | "float16",
  values: () => Float32Array,
): InitializerData {
  return {
    type,
    dims,
    bytes: () => {
      const v = values();
      return asBytes(type === "float16" ? float32ArrayToFloat16(v) : v);
    },
  };
}

export function int64Data(
  dims: readonly number[],
  values: readonly number[] | BigInt64Array,
): InitializerData {
  return {
    type: "int64",
    dims,
    bytes: () =>
      asBytes(
        values instanceof BigInt64Array ? values : BigInt64Array.from(values, (v) => BigInt(v)),
      ),
  };
}
