/**
 * A `WeightSource` that shows a component of a single-file checkpoint under diffusers names:
 * each read fetches the stored tensor and applies its plan's transform (row slice, transpose).
 */
import { type KeyMapping, type KeyPlan, storedShape } from "./ldm-plans.js";
import type { SafetensorsFile } from "./safetensors.js";
import { KeyedWeightSource, sameShape, type WeightInfo } from "./source.js";
import type { Shape } from "./weight-modules.js";

export class MappedWeightSource extends KeyedWeightSource<KeyMapping> {
  /** Checks that every planned source exists with a compatible shape; one error lists problems. */
  constructor(
    label: string,
    private readonly file: SafetensorsFile,
    plan: KeyPlan,
  ) {
    super(label, plan);
    const problems: string[] = [];
    for (const [key, mapping] of plan) {
      if (!file.has(mapping.source)) {
        problems.push(`missing "${mapping.source}" (for ${key})`);
        continue;
      }
      const stored = file.info(mapping.source).shape;
      if (!storedShapeFits(stored, mapping)) {
        problems.push(
          `"${mapping.source}" has shape [${stored.join(",")}], expected [${storedShape(mapping).join(",")}] (for ${key})`,
        );
      }
    }
    if (problems.length > 0) {
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : "";
      throw new Error(`${label} does not match its config: ${problems[0]}${more}`);
    }
  }

  identity(): unknown {
    return { file: this.file.identity(), mapped: this.label, keys: this.entries.size };
  }

  info(key: string): WeightInfo {
    const mapping = this.entry(key);
    return { dtype: this.file.info(mapping.source).dtype, shape: mapping.shape };
  }

  readFloat32(key: string): Float32Array {
    const mapping = this.entry(key);
    return applyTransform(this.file.readFloat32(mapping.source), mapping);
  }

  readFloat16(key: string): Uint16Array | undefined {
    const mapping = this.entry(key);
    const bits = this.file.readFloat16Bits(mapping.source);
    return bits && applyTransform(bits, mapping);
  }

  /** The checkpoint key behind a diffusers key (for messages and tests). */
  sourceOf(key: string): string {
    return this.entry(key).source;
  }
}

/** Equal shapes, up to trailing 1s (a 1x1 convolution kernel and a matrix hold the same data). */
function storedShapeFits(stored: Shape, mapping: KeyMapping): boolean {
  const expected = storedShape(mapping);
  const trim = (shape: Shape) => {
    let end = shape.length;
    while (end > 1 && shape[end - 1] === 1) end--;
    return shape.slice(0, end);
  };
  if (mapping.transform.kind !== "direct") return sameShape(stored, expected);
  return sameShape(trim(stored), trim(expected));
}

function applyTransform<T extends Float32Array | Uint16Array>(values: T, mapping: KeyMapping): T {
  const { transform, shape } = mapping;
  switch (transform.kind) {
    case "direct":
      return values;
    case "rows": {
      const size = shape.reduce((a, b) => a * b, 1);
      return values.slice(transform.part * size, (transform.part + 1) * size) as T;
    }
    case "transpose": {
      // Stored [cols, rows], wanted [rows, cols].
      const [rows, cols] = shape;
      const out = new (values.constructor as new (n: number) => T)(values.length);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) out[r * cols + c] = values[c * rows + r];
      }
      return out;
    }
  }
}
