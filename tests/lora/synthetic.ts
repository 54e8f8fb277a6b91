// Small synthetic LoRA files for the tiny fixture models, in any layout, with seeded random
// values, and the float64 reference of what merging them must give.
import { SeededRandom } from "../../src/index.js";
import type { TensorToWrite } from "../../src/weights/safetensors.js";
import { encodeSafetensors } from "../../src/weights/safetensors.js";

export interface SyntheticModule {
  /** The module name as the file spells it, without the `.lora_down.weight`-like suffix. */
  readonly name: string;
  readonly down: readonly number[];
  readonly up: readonly number[];
  /** kohya: an `.alpha` tensor; undefined: none. */
  readonly alpha?: number;
}

export type Spelling = "kohya" | "peft" | "lora.down" | "lora_linear_layer";

const SUFFIXES: Readonly<Record<Spelling, readonly [string, string]>> = {
  kohya: ["lora_down.weight", "lora_up.weight"],
  peft: ["lora_A.weight", "lora_B.weight"],
  "lora.down": ["lora.down.weight", "lora.up.weight"],
  lora_linear_layer: ["lora_linear_layer.down.weight", "lora_linear_layer.up.weight"],
};

export interface SyntheticLora {
  readonly bytes: Uint8Array;
  /** The float32 values written, per module name. */
  readonly values: ReadonlyMap<string, { down: Float32Array; up: Float32Array }>;
}

export function syntheticLora(
  modules: readonly SyntheticModule[],
  spelling: Spelling,
  seed: number,
  metadata?: Record<string, string>,
): SyntheticLora {
  const random = new SeededRandom(seed);
  const tensors: Record<string, TensorToWrite> = {};
  const values = new Map<string, { down: Float32Array; up: Float32Array }>();
  const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
  const [downSuffix, upSuffix] = SUFFIXES[spelling];
  for (const m of modules) {
    const down = random.normalArray(size(m.down)).map((v) => v * 0.5);
    const up = random.normalArray(size(m.up)).map((v) => v * 0.5);
    values.set(m.name, { down, up });
    tensors[`${m.name}.${downSuffix}`] = { dtype: "F32", shape: m.down, data: down };
    tensors[`${m.name}.${upSuffix}`] = { dtype: "F32", shape: m.up, data: up };
    if (m.alpha !== undefined)
      tensors[`${m.name}.alpha`] = { dtype: "F32", shape: [], data: Float32Array.of(m.alpha) };
  }
  return { bytes: encodeSafetensors(tensors, metadata), values };
}

/** W + sum of scale * up @ down in float64 (down flattened to [rank, cols], up to [rows, rank]). */
export function mergeReference(
  weight: Float32Array,
  rows: number,
  deltas: readonly { down: Float32Array; up: Float32Array; rank: number; scale: number }[],
): Float64Array {
  const cols = weight.length / rows;
  const out = Float64Array.from(weight);
  for (const { down, up, rank, scale } of deltas)
    for (let o = 0; o < rows; o++)
      for (let i = 0; i < cols; i++) {
        let sum = 0;
        for (let k = 0; k < rank; k++) sum += up[o * rank + k] * down[k * cols + i];
        out[o * cols + i] += scale * sum;
      }
  return out;
}

/**
 * The largest difference between a float32 merge and the float64 reference, in units of the
 * float32 rounding step of the reference's largest value: one final rounding gives at most 0.5,
 * and summing in float64 first adds nothing visible at float32 precision.
 */
export function roundingSteps(actual: Float32Array, expected: Float64Array): number {
  let worst = 0;
  let largest = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
    largest = Math.max(largest, Math.abs(expected[i]));
  }
  return worst / (largest * 2 ** -23);
}
