// Builds LDM-layout checkpoints in memory from diffusers components, by running the
// single-file plans backwards. Used to test layouts the fixtures have no file for (SD 2.x,
// old transformers names) and bad checkpoints.
import type { JsonObject } from "../../src/configs/config-json.js";
import { storedShape } from "../../src/weights/ldm-plans.js";
import type { ComponentName } from "../../src/weights/model-files.js";
import type { TensorToWrite } from "../../src/weights/safetensors.js";
import { type CheckpointLayout, singleFilePlan } from "../../src/weights/single-file.js";
import type { WeightSource } from "../../src/weights/source.js";

export interface ComponentToStore {
  readonly config: JsonObject;
  readonly weights: WeightSource;
}

/** LDM tensors for each given component, at the places `layout` says. */
export function ldmTensors(
  layout: CheckpointLayout,
  components: Partial<Record<ComponentName, ComponentToStore>>,
): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  for (const [component, { config, weights }] of Object.entries(components)) {
    const plan = singleFilePlan(component as ComponentName, config, layout, "test");
    const stacked = new Map<string, Uint16Array[]>();
    for (const [key, mapping] of plan) {
      const bits = weights.readFloat16!(key)!;
      const { transform } = mapping;
      if (transform.kind === "rows") {
        const parts = stacked.get(mapping.source) ?? new Array<Uint16Array>(transform.parts);
        parts[transform.part] = bits;
        stacked.set(mapping.source, parts);
        if (parts.filter(Boolean).length === transform.parts) {
          const joined = new Uint16Array(parts.reduce((n, p) => n + p.length, 0));
          let at = 0;
          for (const part of parts) {
            joined.set(part, at);
            at += part.length;
          }
          out[mapping.source] = { dtype: "F16", shape: storedShape(mapping), data: joined };
        }
        continue;
      }
      let data = bits;
      if (transform.kind === "transpose") {
        const [rows, cols] = mapping.shape;
        data = new Uint16Array(bits.length);
        for (let r = 0; r < rows; r++)
          for (let c = 0; c < cols; c++) data[c * rows + r] = bits[r * cols + c];
      }
      // The LDM autoencoder's attention projections are 1x1 convolutions.
      const conv = /mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(mapping.source);
      const shape = conv ? [...mapping.shape, 1, 1] : storedShape(mapping);
      out[mapping.source] = { dtype: "F16", shape, data };
    }
  }
  return out;
}
