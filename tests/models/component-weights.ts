// Test helper: a WeightSource over one safetensors file of a diffusers component folder
// (`unet/diffusion_pytorch_model.safetensors`), plus variants that hide or add keys.
import { readFileSync } from "node:fs";
import { SafetensorsFile } from "../../src/weights/safetensors.js";
import type { WeightInfo, WeightSource } from "../../src/weights/source.js";
import { fixturePath } from "../fixtures.js";

export class SafetensorsWeights implements WeightSource {
  constructor(
    private readonly file: SafetensorsFile,
    readonly label: string,
  ) {}
  keys(): string[] {
    return this.file.keys();
  }
  has(key: string): boolean {
    return this.file.has(key);
  }
  info(key: string): WeightInfo {
    const { dtype, shape } = this.file.info(key);
    return { dtype, shape };
  }
  readFloat32(key: string): Float32Array {
    return this.file.readFloat32(key);
  }
}

/** The config and weights of `pipelines/<pipeline>/<component>` in the fixtures. */
export function fixtureComponent(pipeline: string, component: string) {
  const dir = fixturePath("pipelines", pipeline, component);
  const config: unknown = JSON.parse(readFileSync(`${dir}/config.json`, "utf8"));
  const file = SafetensorsFile.open(`${dir}/diffusion_pytorch_model.safetensors`);
  return { config, weights: new SafetensorsWeights(file, `${pipeline}/${component}`), file };
}

/** A source that hides some keys of another and adds extra ones. */
export function editedWeights(
  source: WeightSource,
  hide: readonly string[],
  extra: Readonly<Record<string, WeightInfo>> = {},
): WeightSource {
  const hidden = new Set(hide);
  return {
    label: source.label,
    keys: () => [...source.keys().filter((k) => !hidden.has(k)), ...Object.keys(extra)],
    has: (key) => (source.has(key) && !hidden.has(key)) || key in extra,
    info: (key) => extra[key] ?? source.info(key),
    readFloat32: (key) => {
      const info = extra[key];
      return info
        ? new Float32Array(info.shape.reduce((a, b) => a * b, 1))
        : source.readFloat32(key);
    },
  };
}

/** A source over tensors held in memory (float32), for layer tests. */
export function memoryWeights(
  tensors: Readonly<Record<string, { shape: readonly number[]; data: Float32Array }>>,
  label = "memory",
): WeightSource {
  return {
    label,
    keys: () => Object.keys(tensors),
    has: (key) => key in tensors,
    info: (key) => ({ dtype: "F32", shape: tensors[key].shape }),
    readFloat32: (key) => tensors[key].data,
  };
}
