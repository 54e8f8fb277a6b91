/**
 * Host-side tensors of the engine: shape arithmetic, indices, flags and the few small float
 * tensors (the timestep and its embedding) that the graph computes before the heavy layers.
 * float32 data lives in a Float32Array, so every host float op rounds to float32 exactly as
 * onnxruntime's CPU kernels do; integers and booleans live in a Float64Array (exact to 2^53,
 * more than any shape or index needs).
 */

import type { TensorProto } from "../onnx/proto.js";
import {
  float16ArrayToFloat32,
  float16BitsToFloat32,
  float32ArrayToFloat16,
} from "../util/float16.js";
import { unsupported } from "./unsupported.js";

export type HostDtype = "float32" | "float64" | "int64" | "int32" | "bool";

export interface HostTensor {
  readonly kind: "host";
  readonly dtype: HostDtype;
  readonly data: Float32Array | Float64Array;
  readonly dims: readonly number[];
  /** A float16 initializer's own bits, kept so f16 storage uploads them without converting. */
  readonly float16Bits?: Uint16Array;
}

/**
 * A host value's elements as an upload in `storage` writes them: a float16 initializer's own
 * bits for f16, never widened first (reading `data` would widen a whole UNet's weights, 860
 * million values for SD 1.5, only to narrow them again), else its float32 values, narrowed for
 * f16.
 */
export function uploadElements(v: HostTensor, storage: "f16" | "f32"): Float32Array | Uint16Array {
  if (storage === "f16" && v.float16Bits) return v.float16Bits;
  // Read as they are (both uses copy them on): a float32 value's data is already f32.
  const data = v.data instanceof Float32Array ? v.data : Float32Array.from(v.data);
  return storage === "f32" ? data : float32ArrayToFloat16(data);
}

export function sizeOf(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

export function hostTensor(
  dtype: HostDtype,
  data: ArrayLike<number>,
  dims: readonly number[],
): HostTensor {
  // Data already of the dtype's array type is taken as it is (callers hand over fresh arrays).
  const array =
    dtype === "float32"
      ? data instanceof Float32Array
        ? data
        : Float32Array.from(data)
      : data instanceof Float64Array
        ? data
        : Float64Array.from(data);
  if (array.length !== sizeOf(dims))
    throw new Error(`${array.length} values for a tensor of shape [${dims.join(", ")}]`);
  return { kind: "host", dtype, data: array, dims: [...dims] };
}

/** The ONNX element type numbers the engine understands, as host dtypes. */
export function dtypeOfOnnx(dataType: number): HostDtype {
  switch (dataType) {
    case 1:
    case 10:
      return "float32";
    case 11:
      return "float64";
    case 7:
      return "int64";
    case 6:
      return "int32";
    case 9:
      return "bool";
    default:
      throw unsupported(`tensors of ONNX element type ${dataType}`);
  }
}

/** `bytes` as a typed array of `n` elements, viewed in place where aligned, else copied. */
function typedView<T>(
  bytes: Uint8Array,
  n: number,
  size: number,
  make: (buffer: ArrayBufferLike, offset: number, length: number) => T,
): T {
  return bytes.byteOffset % size === 0
    ? make(bytes.buffer, bytes.byteOffset, n)
    : // A copy (Uint8Array's constructor; a Node Buffer's slice would be a view of its pool).
      make(new Uint8Array(bytes.subarray(0, n * size)).buffer, 0, n);
}

/**
 * A float16 tensor that keeps its bits and widens them to float32 only if something reads
 * `data` (host operators on small constants do; f16 storage uploads the bits): a UNet's weights
 * are never widened, which saved most of a minute and 3.4 GB per SD 1.5 load.
 */
function halfTensor(dims: number[], bits: Uint16Array): HostTensor {
  let data: Float32Array | undefined;
  return {
    kind: "host",
    dtype: "float32",
    dims,
    float16Bits: bits,
    get data() {
      data ??= float16ArrayToFloat32(bits);
      return data;
    },
  };
}

/** An initializer or constant's values (float16 widened to float32 when read). */
export function decodeTensorProto(t: TensorProto): HostTensor {
  const dims = t.dims.map(Number);
  const n = sizeOf(dims);
  const dtype = dtypeOfOnnx(t.dataType);
  if (t.externalData && t.externalData.length > 0 && !t.rawData)
    throw new Error(`initializer "${t.name}" has external data that was not loaded`);
  const raw = t.rawData;
  // Little-endian hosts (every platform the engine runs on) view the bytes as they are.
  if (raw && raw.byteLength === 2 * n && t.dataType === 10)
    return halfTensor(
      dims,
      typedView(raw, n, 2, (b, o, l) => new Uint16Array(b, o, l)),
    );
  if (raw && raw.byteLength === 4 * n && t.dataType === 1)
    return {
      kind: "host",
      dtype,
      data: typedView(raw, n, 4, (b, o, l) => new Float32Array(b, o, l)),
      dims,
    };
  const out = dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
  if (raw && raw.byteLength > 0) {
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i++) {
      switch (t.dataType) {
        case 1:
          out[i] = view.getFloat32(i * 4, true);
          break;
        case 10:
          out[i] = float16BitsToFloat32(view.getUint16(i * 2, true));
          break;
        case 11:
          out[i] = view.getFloat64(i * 8, true);
          break;
        case 7:
          out[i] = Number(view.getBigInt64(i * 8, true));
          break;
        case 6:
          out[i] = view.getInt32(i * 4, true);
          break;
        default:
          out[i] = view.getUint8(i);
      }
    }
  } else {
    const values = t.floatData ?? t.int64Data ?? t.int32Data ?? t.doubleData ?? ([] as number[]);
    if (t.dataType === 10) for (let i = 0; i < n; i++) out[i] = float16BitsToFloat32(values[i]);
    else for (let i = 0; i < n; i++) out[i] = Number(values[i]);
  }
  return { kind: "host", dtype, data: out, dims };
}

/** Row-major strides of `dims`. */
export function stridesOf(dims: readonly number[]): number[] {
  const strides = new Array<number>(dims.length);
  let s = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= dims[d];
  }
  return strides;
}

/** Numpy-style broadcast of two shapes, or a one-line error. */
export function broadcastShapes(a: readonly number[], b: readonly number[], op: string): number[] {
  const rank = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const x = a[a.length - rank + i] ?? 1;
    const y = b[b.length - rank + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1)
      throw new Error(`${op}: shapes [${a.join(", ")}] and [${b.join(", ")}] do not broadcast`);
    out.push(x === 1 ? y : x);
  }
  return out;
}

/** Strides to read a tensor of `dims` broadcast to `out` (0 along broadcast axes). */
export function broadcastStrides(dims: readonly number[], out: readonly number[]): number[] {
  const own = stridesOf(dims);
  const offset = out.length - dims.length;
  return out.map((_, i) => (i < offset || dims[i - offset] === 1 ? 0 : own[i - offset]));
}
