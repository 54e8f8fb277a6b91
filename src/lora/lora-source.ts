/**
 * A `WeightSource` with LoRA deltas merged in: `W + sum_i weight_i * (alpha_i / rank_i) * up_i @
 * down_i` for the weights the LoRAs change, every other key passed through. Merging happens in
 * the lazy read, so only the changed tensors are materialised, one at a time, while a model is
 * written; both engines then run the merged weights at no cost per step.
 */
import { type WeightInfo, type WeightSource, weightIdentity } from "../weights/source.js";
import type { LoraFile, LoraModule } from "./lora-file.js";

/** Bumped when the merge arithmetic changes, so cached models built the old way are not reused. */
export const LORA_MERGE_FORMAT = 1;

/** One LoRA module applied to one weight. */
export interface LoraPatch {
  readonly lora: LoraFile;
  readonly module: LoraModule;
  /** The user's weight times alpha / rank. */
  readonly scale: number;
}

/** Which file and weight changed a component, for the cache key. */
export interface LoraIdentity {
  readonly sha256: string;
  readonly weight: number;
}

export class LoraWeightSource implements WeightSource {
  readonly label: string;

  constructor(
    private readonly base: WeightSource,
    private readonly patches: ReadonlyMap<string, readonly LoraPatch[]>,
    private readonly loras: readonly LoraIdentity[],
  ) {
    this.label = base.label;
  }

  identity(): unknown {
    return { base: weightIdentity(this.base), lora: LORA_MERGE_FORMAT, loras: this.loras };
  }

  keys(): string[] {
    return this.base.keys();
  }

  has(key: string): boolean {
    return this.base.has(key);
  }

  info(key: string): WeightInfo {
    return this.base.info(key);
  }

  /** The files and weights that change this source. */
  get loraIdentities(): readonly LoraIdentity[] {
    return this.loras;
  }

  /** The keys a LoRA changes. */
  patchedKeys(): string[] {
    return [...this.patches.keys()];
  }

  readFloat32(key: string): Float32Array {
    const patches = this.patches.get(key);
    const weights = this.base.readFloat32(key);
    if (!patches) return weights;
    return mergeDeltas(weights, this.base.info(key).shape, patches, `${this.label} "${key}"`);
  }
}

/**
 * W + sum of scale * up @ down, in float32. Each output row's delta is summed in float64 over
 * every patch and rank before one rounding, so stacking a LoRA twice at half weight gives what
 * once at full weight gives, and the result is as close to the exact sum as float32 allows.
 * `down` is [rank, cols] (a conv kernel [rank, in, kh, kw] flattens to cols = in * kh * kw, as the
 * weight [out, in, kh, kw] does); `up` is [rows, rank].
 */
export function mergeDeltas(
  weights: Float32Array,
  shape: readonly number[],
  patches: readonly LoraPatch[],
  what: string,
): Float32Array {
  const rows = shape[0];
  const cols = weights.length / rows;
  const matrices = patches.map((patch) => ({
    ...patch.lora.readMatrices(patch.module),
    rank: patch.module.rank,
    scale: patch.scale,
    patch,
  }));
  const out = new Float32Array(weights.length);
  const delta = new Float64Array(cols);
  for (let o = 0; o < rows; o++) {
    delta.fill(0);
    for (const { down, up, rank, scale } of matrices) {
      const first = o * rank;
      let k = 0;
      // Four ranks per pass: the row of sums is read and written a quarter as often.
      for (; k + 4 <= rank; k += 4) {
        const c0 = scale * up[first + k];
        const c1 = scale * up[first + k + 1];
        const c2 = scale * up[first + k + 2];
        const c3 = scale * up[first + k + 3];
        const a0 = k * cols;
        const a1 = a0 + cols;
        const a2 = a1 + cols;
        const a3 = a2 + cols;
        for (let i = 0; i < cols; i++)
          delta[i] += c0 * down[a0 + i] + c1 * down[a1 + i] + c2 * down[a2 + i] + c3 * down[a3 + i];
      }
      for (; k < rank; k++) {
        const c = scale * up[first + k];
        const at = k * cols;
        for (let i = 0; i < cols; i++) delta[i] += c * down[at + i];
      }
    }
    const row = o * cols;
    for (let i = 0; i < cols; i++) out[row + i] = weights[row + i] + delta[i];
  }
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i])) {
      const names = [...new Set(matrices.map((m) => m.patch.lora.path))].join(", ");
      throw new Error(
        `LoRA ${names}: merging into ${what} gives non-finite values (a corrupt file, or a weight too large)`,
      );
    }
  }
  return out;
}
