/**
 * Batch arithmetic on host tensors (row-major Float32Array with dims): the repeats and joins
 * that classifier-free guidance and long prompts need.
 */
import type { HostTensor } from "./components.js";

/** Repeats each of `count` rows `times` times: [a, b] -> [a, a, b, b]. */
export function repeatRows(tensor: HostTensor, times: number): HostTensor {
  if (times === 1) return tensor;
  const rows = tensor.dims[0];
  const rowSize = tensor.data.length / rows;
  const out = new Float32Array(tensor.data.length * times);
  for (let r = 0; r < rows; r++) {
    const row = tensor.data.subarray(r * rowSize, (r + 1) * rowSize);
    for (let k = 0; k < times; k++) out.set(row, (r * times + k) * rowSize);
  }
  return { data: out, dims: [rows * times, ...tensor.dims.slice(1)] };
}

export function concatRows(a: HostTensor, b: HostTensor): HostTensor {
  const out = new Float32Array(a.data.length + b.data.length);
  out.set(a.data);
  out.set(b.data, a.data.length);
  return { data: out, dims: [a.dims[0] + b.dims[0], ...a.dims.slice(1)] };
}

export function zerosLike(t: HostTensor): HostTensor {
  return { data: new Float32Array(t.data.length), dims: t.dims };
}

export function duplicate(x: Float32Array): Float32Array {
  const out = new Float32Array(x.length * 2);
  out.set(x);
  out.set(x, x.length);
  return out;
}

/** noise = uncond + scale * (text - uncond), with the unconditional half first. */
export function applyGuidance(prediction: Float32Array, scale: number): Float32Array {
  const half = prediction.length / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const uncond = prediction[i];
    out[i] = uncond + scale * (prediction[half + i] - uncond);
  }
  return out;
}

export function repeatBatchForGuidance(
  pair: { positive: HostTensor; negative?: HostTensor },
  imagesPerPrompt: number,
  guided: boolean,
): HostTensor {
  const positive = repeatRows(pair.positive, imagesPerPrompt);
  if (!guided) return positive;
  return concatRows(repeatRows(pair.negative!, imagesPerPrompt), positive);
}

export function concatAxis1(a: HostTensor, b: HostTensor): HostTensor {
  const [batch, sa, c] = a.dims;
  const sb = b.dims[1];
  const out = new Float32Array(batch * (sa + sb) * c);
  for (let n = 0; n < batch; n++) {
    out.set(a.data.subarray(n * sa * c, (n + 1) * sa * c), n * (sa + sb) * c);
    out.set(b.data.subarray(n * sb * c, (n + 1) * sb * c), n * (sa + sb) * c + sa * c);
  }
  return { data: out, dims: [batch, sa + sb, c] };
}

/**
 * SDXL's prompt embeddings: the two encoders' chosen hidden states, (B, S, C1) and (B, S, C2),
 * concatenated along the channel axis into (B, S, C1 + C2).
 */
export function combineSdxlTextEmbeddings(first: HostTensor, second: HostTensor): HostTensor {
  const [b1, s1, c1] = first.dims;
  const [b2, s2, c2] = second.dims;
  if (first.dims.length !== 3 || second.dims.length !== 3 || b1 !== b2 || s1 !== s2) {
    throw new Error(
      `SDXL text embeddings need (B, S, C) states with equal B and S, got [${first.dims.join(",")}] and [${second.dims.join(",")}]`,
    );
  }
  const rows = b1 * s1;
  const data = new Float32Array(rows * (c1 + c2));
  for (let r = 0; r < rows; r++) {
    data.set(first.data.subarray(r * c1, (r + 1) * c1), r * (c1 + c2));
    data.set(second.data.subarray(r * c2, (r + 1) * c2), r * (c1 + c2) + c1);
  }
  return { data, dims: [b1, s1, c1 + c2] };
}
