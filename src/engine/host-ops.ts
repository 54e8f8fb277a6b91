/**
 * The ONNX operators the engine evaluates on the host: shape arithmetic (Shape, Gather, Concat,
 * Slice, Range ...), comparisons and flags, the control values of ToDo's per-step `If`, and ToMe's
 * selection steps (TopK, ArgMax, GatherElements, ScatterElements, ScatterND), which act on small
 * index tensors. Each operator follows the ONNX specification (opset 17).
 */
import type { NodeProto } from "../onnx/proto.js";
import { type Attributes, normalizeAxis } from "./attributes.js";
import {
  broadcastShapes,
  broadcastStrides,
  type HostDtype,
  type HostTensor,
  hostTensor,
  sizeOf,
  stridesOf,
} from "./host-tensor.js";
import { unsupported } from "./unsupported.js";

type Binary = (a: number, b: number) => number;

const INT_DTYPES = new Set<HostDtype>(["int64", "int32"]);

function arithmetic(op: string, dtype: HostDtype): Binary | null {
  const integer = INT_DTYPES.has(dtype);
  switch (op) {
    case "Add":
      return (a, b) => a + b;
    case "Sub":
      return (a, b) => a - b;
    case "Mul":
      return (a, b) => a * b;
    case "Div":
      return integer ? (a, b) => Math.trunc(a / b) : (a, b) => a / b;
    case "Mod":
      // fmod = 0: the result takes the divisor's sign (integers only in our graphs).
      return (a, b) => {
        const r = a % b;
        return r !== 0 && r < 0 !== b < 0 ? r + b : r;
      };
    case "Pow":
      return (a, b) => a ** b;
    case "Max":
      return (a, b) => Math.max(a, b);
    case "Min":
      return (a, b) => Math.min(a, b);
    default:
      return null;
  }
}

const COMPARISONS: Readonly<Record<string, Binary>> = {
  Equal: (a, b) => Number(a === b),
  Greater: (a, b) => Number(a > b),
  GreaterOrEqual: (a, b) => Number(a >= b),
  Less: (a, b) => Number(a < b),
  LessOrEqual: (a, b) => Number(a <= b),
  And: (a, b) => Number(a !== 0 && b !== 0),
  Or: (a, b) => Number(a !== 0 || b !== 0),
};

/** erf to float32 accuracy (Abramowitz and Stegun 7.1.26 is too coarse on the host: use a series). */
export function erf(x: number): number {
  const t = Math.abs(x);
  if (t < 2.5) {
    // Maclaurin series: converges fast for |x| < 2.5.
    let term = x;
    let sum = x;
    for (let n = 1; n < 60; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // Continued fraction for erfc at larger |x|.
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (t + f);
  const erfc = Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f);
  return Math.sign(x) * (1 - erfc);
}

const UNARY: Readonly<Record<string, (x: number) => number>> = {
  Not: (x) => Number(x === 0),
  Floor: Math.floor,
  Ceil: Math.ceil,
  Neg: (x) => -x,
  Abs: Math.abs,
  Sqrt: Math.sqrt,
  Exp: Math.exp,
  Sin: Math.sin,
  Cos: Math.cos,
  Erf: erf,
  Sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  Identity: (x) => x,
};

function broadcastBinary(
  a: HostTensor,
  b: HostTensor,
  dtype: HostDtype,
  f: Binary,
  op: string,
): HostTensor {
  const dims = broadcastShapes(a.dims, b.dims, op);
  const sa = broadcastStrides(a.dims, dims);
  const sb = broadcastStrides(b.dims, dims);
  const n = sizeOf(dims);
  const out = dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
  const rank = dims.length;
  const index = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < rank; d++) {
      ia += index[d] * sa[d];
      ib += index[d] * sb[d];
    }
    out[i] = f(a.data[ia], b.data[ib]);
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d] < dims[d]) break;
      index[d] = 0;
    }
  }
  return { kind: "host", dtype, data: out, dims };
}

function castTo(to: number, x: HostTensor): HostTensor {
  const map: Readonly<Record<number, HostDtype>> = {
    1: "float32",
    10: "float32",
    11: "float64",
    7: "int64",
    6: "int32",
    9: "bool",
  };
  const dtype = map[to];
  if (!dtype) throw unsupported(`Cast to ONNX type ${to}`);
  // Typed-array copies rather than a JavaScript array in between: a UNet call casts its inputs
  // and outputs here (hundreds of thousands of values), and host time is call time.
  const n = x.data.length;
  const data = dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
  if (dtype === "bool") for (let i = 0; i < n; i++) data[i] = x.data[i] !== 0 ? 1 : 0;
  else if (INT_DTYPES.has(dtype)) for (let i = 0; i < n; i++) data[i] = Math.trunc(x.data[i]);
  else data.set(x.data);
  return hostTensor(dtype, data, x.dims);
}

/** Reads an int tensor as numbers (shapes, axes, indices). */
export function ints(t: HostTensor | undefined): number[] {
  return t ? Array.from(t.data) : [];
}

/** Resolves Reshape's target shape (0 copies, -1 infers). */
export function reshapeDims(
  dims: readonly number[],
  target: readonly number[],
  allowZero: boolean,
): number[] {
  const out = target.map((d, i) => (d === 0 && !allowZero ? dims[i] : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const total = sizeOf(dims);
  const result = out.map((d) => (d === -1 ? total / known : d));
  if (sizeOf(result) !== total || result.some((d) => !Number.isInteger(d)))
    throw new Error(`Reshape: cannot reshape [${dims.join(", ")}] to [${target.join(", ")}]`);
  return result;
}

export function unsqueezeDims(dims: readonly number[], axes: readonly number[]): number[] {
  const rank = dims.length + axes.length;
  const set = new Set(axes.map((a) => normalizeAxis(a, rank)));
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : dims[j++]);
  return out;
}

export function squeezeDims(dims: readonly number[], axes: readonly number[]): number[] {
  const set = new Set(
    axes.length > 0
      ? axes.map((a) => normalizeAxis(a, dims.length))
      : dims.flatMap((d, i) => (d === 1 ? [i] : [])),
  );
  return dims.filter((_, i) => !set.has(i));
}

/** Slice parameters resolved to (start, step, count) per axis of `dims`. */
export function resolveSlice(
  dims: readonly number[],
  starts: readonly number[],
  ends: readonly number[],
  axesIn: readonly number[],
  stepsIn: readonly number[],
): { start: number[]; step: number[]; count: number[] } {
  const start = dims.map(() => 0);
  const step = dims.map(() => 1);
  const count = [...dims];
  const axes = axesIn.length > 0 ? axesIn : starts.map((_, i) => i);
  axes.forEach((axisIn, i) => {
    const axis = normalizeAxis(axisIn, dims.length);
    const d = dims[axis];
    const s = stepsIn[i] ?? 1;
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v, lo), hi);
    let b = starts[i] < 0 ? starts[i] + d : starts[i];
    let e = ends[i] < 0 ? ends[i] + d : ends[i];
    if (s > 0) {
      b = clamp(b, 0, d);
      e = clamp(e, 0, d);
    } else {
      b = clamp(b, 0, d - 1);
      e = clamp(e, -1, d - 1);
    }
    start[axis] = b;
    step[axis] = s;
    count[axis] = Math.max(0, Math.ceil((e - b) / s));
  });
  return { start, step, count };
}

/** Copies a strided view (start/step per axis) of `x` into a new tensor of `count` dims. */
function stridedView(
  x: HostTensor,
  start: readonly number[],
  step: readonly number[],
  count: readonly number[],
): HostTensor {
  const strides = stridesOf(x.dims);
  const n = sizeOf(count);
  const out = x.dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
  const rank = count.length;
  const index = new Array<number>(rank).fill(0);
  for (let i = 0; i < n; i++) {
    let src = 0;
    for (let d = 0; d < rank; d++) src += (start[d] + index[d] * step[d]) * strides[d];
    out[i] = x.data[src];
    for (let d = rank - 1; d >= 0; d--) {
      if (++index[d] < count[d]) break;
      index[d] = 0;
    }
  }
  return { kind: "host", dtype: x.dtype, data: out, dims: [...count] };
}

function permute(x: HostTensor, perm: readonly number[]): HostTensor {
  const strides = stridesOf(x.dims);
  const dims = perm.map((p) => x.dims[p]);
  const n = sizeOf(dims);
  const out = x.dtype === "float32" ? new Float32Array(n) : new Float64Array(n);
  const index = new Array<number>(dims.length).fill(0);
  for (let i = 0; i < n; i++) {
    let src = 0;
    for (let d = 0; d < dims.length; d++) src += index[d] * strides[perm[d]];
    out[i] = x.data[src];
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++index[d] < dims[d]) break;
      index[d] = 0;
    }
  }
  return { kind: "host", dtype: x.dtype, data: out, dims };
}

/** Splits dims into (outer, axis, inner) around `axis`. */
function around(dims: readonly number[], axis: number): [number, number, number] {
  return [sizeOf(dims.slice(0, axis)), dims[axis], sizeOf(dims.slice(axis + 1))];
}

function reduce(
  op: string,
  x: HostTensor,
  axesIn: readonly number[],
  keepdims: boolean,
): HostTensor {
  const axes = new Set(
    (axesIn.length > 0 ? axesIn : x.dims.map((_, i) => i)).map((a) =>
      normalizeAxis(a, x.dims.length),
    ),
  );
  const outDims = x.dims.map((d, i) => (axes.has(i) ? 1 : d));
  const n = sizeOf(outDims);
  const acc = new Float64Array(n).fill(op === "ReduceMax" ? -Infinity : 0);
  const outStrides = stridesOf(outDims);
  const index = new Array<number>(x.dims.length).fill(0);
  for (let i = 0; i < x.data.length; i++) {
    let o = 0;
    for (let d = 0; d < index.length; d++) if (!axes.has(d)) o += index[d] * outStrides[d];
    const v = x.data[i];
    if (op === "ReduceMax") acc[o] = Math.max(acc[o], v);
    else if (op === "ReduceL2") acc[o] += v * v;
    else acc[o] += v;
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d] < x.dims[d]) break;
      index[d] = 0;
    }
  }
  const count = x.data.length / n;
  const values = Array.from(acc, (v) =>
    op === "ReduceMean" ? v / count : op === "ReduceL2" ? Math.sqrt(v) : v,
  );
  const dims = keepdims ? outDims : x.dims.filter((_, i) => !axes.has(i));
  return hostTensor(x.dtype, values, dims);
}

function topK(x: HostTensor, k: number, axisIn: number, largest: boolean): HostTensor[] {
  const axis = normalizeAxis(axisIn, x.dims.length);
  const [outer, length, inner] = around(x.dims, axis);
  const dims = x.dims.map((d, i) => (i === axis ? k : d));
  const values = new Array<number>(sizeOf(dims));
  const indices = new Array<number>(sizeOf(dims));
  for (let o = 0; o < outer; o++) {
    for (let i = 0; i < inner; i++) {
      const order = Array.from({ length }, (_, j) => j);
      const at = (j: number) => x.data[(o * length + j) * inner + i];
      // Ties keep the lower index first, as onnxruntime's sorted TopK does.
      order.sort((p, q) => (largest ? at(q) - at(p) : at(p) - at(q)) || p - q);
      for (let j = 0; j < k; j++) {
        values[(o * k + j) * inner + i] = at(order[j]);
        indices[(o * k + j) * inner + i] = order[j];
      }
    }
  }
  return [hostTensor(x.dtype, values, dims), hostTensor("int64", indices, dims)];
}

function gather(x: HostTensor, indices: HostTensor, axisIn: number): HostTensor {
  const axis = normalizeAxis(axisIn, x.dims.length);
  const [outer, length, inner] = around(x.dims, axis);
  const dims = [...x.dims.slice(0, axis), ...indices.dims, ...x.dims.slice(axis + 1)];
  const values: number[] = [];
  for (let o = 0; o < outer; o++)
    for (const raw of indices.data) {
      const j = raw < 0 ? raw + length : raw;
      for (let i = 0; i < inner; i++) values.push(x.data[(o * length + j) * inner + i]);
    }
  return hostTensor(x.dtype, values, dims);
}

/** Visits every element of `dims`, passing its flat index and coordinates. */
function forEachIndex(dims: readonly number[], f: (flat: number, index: number[]) => void): void {
  const index = new Array<number>(dims.length).fill(0);
  const n = sizeOf(dims);
  for (let i = 0; i < n; i++) {
    f(i, index);
    for (let d = dims.length - 1; d >= 0; d--) {
      if (++index[d] < dims[d]) break;
      index[d] = 0;
    }
  }
}

function gatherElements(x: HostTensor, indices: HostTensor, axisIn: number): HostTensor {
  const axis = normalizeAxis(axisIn, x.dims.length);
  const strides = stridesOf(x.dims);
  const values = new Array<number>(indices.data.length);
  forEachIndex(indices.dims, (flat, index) => {
    let src = 0;
    for (let d = 0; d < index.length; d++) {
      let c = index[d];
      if (d === axis) {
        c = indices.data[flat];
        if (c < 0) c += x.dims[axis];
      }
      src += c * strides[d];
    }
    values[flat] = x.data[src];
  });
  return hostTensor(x.dtype, values, indices.dims);
}

function scatterElements(
  x: HostTensor,
  indices: HostTensor,
  updates: HostTensor,
  axisIn: number,
): HostTensor {
  const axis = normalizeAxis(axisIn, x.dims.length);
  const strides = stridesOf(x.dims);
  const values = Array.from(x.data);
  forEachIndex(indices.dims, (flat, index) => {
    let dst = 0;
    for (let d = 0; d < index.length; d++) {
      let c = index[d];
      if (d === axis) {
        c = indices.data[flat];
        if (c < 0) c += x.dims[axis];
      }
      dst += c * strides[d];
    }
    values[dst] = updates.data[flat];
  });
  return hostTensor(x.dtype, values, x.dims);
}

/**
 * GatherND (ONNX opset 13): for each index tuple of `indices` (its last axis, length q), the
 * slice of `x` it addresses, the first `batchDims` axes shared by both.
 */
export function gatherNd(x: HostTensor, indices: HostTensor, batchDims: number): HostTensor {
  const q = indices.dims.at(-1) ?? 0;
  if (batchDims + q > x.dims.length)
    throw new Error(
      `GatherND: ${batchDims} batch axes and tuples of ${q} exceed rank ${x.dims.length}`,
    );
  const batchCount = sizeOf(x.dims.slice(0, batchDims));
  const tuplesPerBatch = sizeOf(indices.dims.slice(batchDims, -1));
  const sliceDims = x.dims.slice(batchDims + q);
  const slice = sizeOf(sliceDims);
  const inner = stridesOf(x.dims.slice(batchDims));
  const perBatch = sizeOf(x.dims.slice(batchDims));
  const values: number[] = [];
  for (let b = 0; b < batchCount; b++)
    for (let t = 0; t < tuplesPerBatch; t++) {
      let base = b * perBatch;
      for (let j = 0; j < q; j++) {
        const size = x.dims[batchDims + j];
        let c = indices.data[(b * tuplesPerBatch + t) * q + j];
        if (c < 0) c += size;
        if (c < 0 || c >= size)
          throw new Error(`GatherND: index ${c} out of range for axis of ${size}`);
        base += c * inner[j];
      }
      for (let s = 0; s < slice; s++) values.push(x.data[base + s]);
    }
  return hostTensor(x.dtype, values, [...indices.dims.slice(0, -1), ...sliceDims]);
}

function scatterNd(
  x: HostTensor,
  indices: HostTensor,
  updates: HostTensor,
  reduction: string,
): HostTensor {
  const strides = stridesOf(x.dims);
  const q = indices.dims.at(-1) ?? 0;
  const slice = sizeOf(x.dims.slice(q));
  const tuples = indices.data.length / Math.max(q, 1);
  // Accumulate in float64, then round once: scatter-add over float32 in index order matches to
  // within rounding of the sum, and the UNet tolerance is far above that.
  const values = Float64Array.from(x.data);
  for (let t = 0; t < tuples; t++) {
    let base = 0;
    for (let j = 0; j < q; j++) {
      let c = indices.data[t * q + j];
      if (c < 0) c += x.dims[j];
      base += c * strides[j];
    }
    for (let s = 0; s < slice; s++) {
      const u = updates.data[t * slice + s];
      if (reduction === "add") values[base + s] += u;
      else if (reduction === "none") values[base + s] = u;
      else throw unsupported(`ScatterND with reduction "${reduction}"`);
    }
  }
  return hostTensor(x.dtype, values, x.dims);
}

/**
 * Evaluates `node` on host tensors; returns null when the operator has no host implementation
 * (the executor then runs it on the GPU or reports it as unsupported).
 */
export function runHostOp(
  node: NodeProto,
  inputs: readonly (HostTensor | undefined)[],
  attrs: Attributes,
): HostTensor[] | null {
  const op = node.opType;
  const x = inputs[0];
  const need = (i: number): HostTensor => {
    const t = inputs[i];
    if (!t) throw new Error(`${op} "${node.name ?? ""}": input ${i} is missing`);
    return t;
  };
  if (node.domain && node.domain !== "" && node.domain !== "ai.onnx") return null;
  const arith = x ? arithmetic(op, x.dtype) : null;
  if (arith) return [broadcastBinary(need(0), need(1), need(0).dtype, arith, op)];
  if (COMPARISONS[op]) return [broadcastBinary(need(0), need(1), "bool", COMPARISONS[op], op)];
  if (UNARY[op])
    return [hostTensor(need(0).dtype, Array.from(need(0).data, UNARY[op]), need(0).dims)];
  switch (op) {
    case "Constant": {
      const t = attrs.tensor("value");
      if (!t) throw new Error("Constant: only the tensor `value` form is supported");
      return [t];
    }
    case "Shape": {
      const dims = need(0).dims;
      const r = dims.length;
      const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
      return [
        hostTensor("int64", dims.slice(clamp(attrs.int("start", 0)), clamp(attrs.int("end", r))), [
          clamp(attrs.int("end", r)) - clamp(attrs.int("start", 0)),
        ]),
      ];
    }
    case "ConstantOfShape": {
      const value = attrs.tensor("value") ?? hostTensor("float32", [0], [1]);
      const dims = ints(need(0));
      return [hostTensor(value.dtype, new Array(sizeOf(dims)).fill(value.data[0]), dims)];
    }
    case "Cast":
      return [castTo(attrs.int("to", 1), need(0))];
    case "Reshape":
      return [
        {
          ...need(0),
          dims: reshapeDims(need(0).dims, ints(need(1)), attrs.int("allowzero", 0) === 1),
        },
      ];
    case "Unsqueeze":
      return [{ ...need(0), dims: unsqueezeDims(need(0).dims, ints(need(1))) }];
    case "Squeeze":
      return [{ ...need(0), dims: squeezeDims(need(0).dims, ints(inputs[1])) }];
    case "Concat": {
      const parts = inputs.filter((t): t is HostTensor => t !== undefined);
      const axis = normalizeAxis(attrs.int("axis", 0), parts[0].dims.length);
      const dims = [...parts[0].dims];
      dims[axis] = parts.reduce((a, t) => a + t.dims[axis], 0);
      const outer = sizeOf(dims.slice(0, axis));
      const values: number[] = [];
      for (let o = 0; o < outer; o++)
        for (const t of parts) {
          const chunk = sizeOf(t.dims.slice(axis));
          for (let i = 0; i < chunk; i++) values.push(t.data[o * chunk + i]);
        }
      return [hostTensor(parts[0].dtype, values, dims)];
    }
    case "Gather":
      return [gather(need(0), need(1), attrs.int("axis", 0))];
    case "GatherND":
      return [gatherNd(need(0), need(1), attrs.int("batch_dims", 0))];
    case "GatherElements":
      return [gatherElements(need(0), need(1), attrs.int("axis", 0))];
    case "ScatterElements":
      return [scatterElements(need(0), need(1), need(2), attrs.int("axis", 0))];
    case "ScatterND":
      return [scatterNd(need(0), need(1), need(2), attrs.string("reduction", "none"))];
    case "Slice": {
      const s = resolveSlice(
        need(0).dims,
        ints(need(1)),
        ints(need(2)),
        ints(inputs[3]),
        ints(inputs[4]),
      );
      return [stridedView(need(0), s.start, s.step, s.count)];
    }
    case "Expand": {
      const target = ints(need(1));
      const shaped = hostTensor("float64", new Array(sizeOf(target)).fill(0), target);
      return [broadcastBinary(need(0), shaped, need(0).dtype, (v) => v, op)];
    }
    case "Range": {
      const [start, limit, delta] = [need(0).data[0], need(1).data[0], need(2).data[0]];
      const n = Math.max(Math.ceil((limit - start) / delta), 0);
      return [
        hostTensor(
          need(0).dtype,
          Array.from({ length: n }, (_, i) => start + i * delta),
          [n],
        ),
      ];
    }
    case "Transpose": {
      const perm = attrs.ints("perm") ?? need(0).dims.map((_, i) => need(0).dims.length - 1 - i);
      return [permute(need(0), perm)];
    }
    case "Split": {
      const axis = normalizeAxis(attrs.int("axis", 0), need(0).dims.length);
      const total = need(0).dims[axis];
      const count = node.output.length;
      const sizes = inputs[1] ? ints(inputs[1]) : new Array(count).fill(Math.ceil(total / count));
      let offset = 0;
      return sizes.map((size, i) => {
        const length = i === count - 1 ? total - offset : size;
        const start = need(0).dims.map((_, d) => (d === axis ? offset : 0));
        const dims = need(0).dims.map((d, j) => (j === axis ? length : d));
        offset += length;
        return stridedView(
          need(0),
          start,
          dims.map(() => 1),
          dims,
        );
      });
    }
    case "TopK":
      return topK(need(0), ints(need(1))[0], attrs.int("axis", -1), attrs.int("largest", 1) === 1);
    case "ArgMax": {
      const axis = normalizeAxis(attrs.int("axis", 0), need(0).dims.length);
      const [outer, length, inner] = around(need(0).dims, axis);
      const values: number[] = [];
      for (let o = 0; o < outer; o++)
        for (let i = 0; i < inner; i++) {
          let best = 0;
          for (let j = 1; j < length; j++)
            if (
              need(0).data[(o * length + j) * inner + i] >
              need(0).data[(o * length + best) * inner + i]
            )
              best = j;
          values.push(best);
        }
      const keep = attrs.int("keepdims", 1) === 1;
      const dims = keep
        ? need(0).dims.map((d, i) => (i === axis ? 1 : d))
        : need(0).dims.filter((_, i) => i !== axis);
      return [hostTensor("int64", values, dims)];
    }
    case "ReduceSum":
    case "ReduceMean":
    case "ReduceMax":
    case "ReduceL2": {
      const axes = attrs.ints("axes") ?? ints(inputs[1]);
      return [reduce(op, need(0), axes, attrs.int("keepdims", 1) === 1)];
    }
    case "Where": {
      const chosen = broadcastBinary(need(0), need(1), "int64", (c) => c, op);
      const first = broadcastBinary(chosen, need(1), need(1).dtype, (_, v) => v, op);
      const second = broadcastBinary(chosen, need(2), need(2).dtype, (_, v) => v, op);
      const values = Array.from(chosen.data, (c, i) => (c ? first.data[i] : second.data[i]));
      return [hostTensor(need(1).dtype, values, chosen.dims)];
    }
    case "Clip": {
      const lo = inputs[1]?.data[0] ?? -Infinity;
      const hi = inputs[2]?.data[0] ?? Infinity;
      return [
        hostTensor(
          need(0).dtype,
          Array.from(need(0).data, (v) => Math.min(Math.max(v, lo), hi)),
          need(0).dims,
        ),
      ];
    }
    default:
      return null;
  }
}
