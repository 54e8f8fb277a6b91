/**
 * LoRAs on ONNX exports: an exported graph cannot be rebuilt, but where the exporter kept the
 * diffusers/transformers parameter names on its initializers (convolutions, in most exports),
 * a LoRA's delta can be added to the initializer of that name. The float initializers of a
 * model are shown as a `WeightSource` (names and shapes from the graph, values read on demand,
 * from external data files too), so that LoRA matching and merging work on them unchanged.
 */
import { readExternalTensor } from "../onnx/model-io.js";
import { type ModelProto, TensorDataType, type TensorProto } from "../onnx/proto.js";
import { float16ArrayToFloat32, float32ArrayToFloat16 } from "../util/float16.js";
import { KeyedWeightSource, type WeightInfo, type WeightSource } from "../weights/source.js";

const { FLOAT, FLOAT16 } = TensorDataType;

export class InitializerWeights extends KeyedWeightSource<TensorProto> {
  /** `dir` is the model's folder, where its external data files are. */
  constructor(
    label: string,
    model: ModelProto,
    private readonly dir: string,
  ) {
    const tensors = new Map<string, TensorProto>();
    for (const tensor of model.graph.initializer ?? []) {
      if (tensor.name && (tensor.dataType === FLOAT || tensor.dataType === FLOAT16))
        tensors.set(tensor.name, tensor);
    }
    super(label, tensors, "initializer");
  }

  identity(): unknown {
    return { onnx: this.label };
  }

  info(key: string): WeightInfo {
    const tensor = this.entry(key);
    return { dtype: tensor.dataType === FLOAT16 ? "F16" : "F32", shape: tensor.dims.map(Number) };
  }

  readFloat32(key: string): Float32Array {
    const tensor = this.entry(key);
    const count = tensor.dims.reduce((a, b) => a * Number(b), 1);
    if (tensor.dataType === FLOAT && tensor.floatData && tensor.floatData.length === count)
      return Float32Array.from(tensor.floatData);
    const bytes = this.bytes(tensor);
    const width = tensor.dataType === FLOAT16 ? 2 : 4;
    if (bytes.byteLength !== count * width)
      throw new Error(
        `${this.label}: initializer "${key}" holds ${bytes.byteLength} bytes, expected ${count * width}`,
      );
    const aligned = bytes.byteOffset % width === 0 ? bytes : bytes.slice();
    return tensor.dataType === FLOAT16
      ? float16ArrayToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, count))
      : new Float32Array(aligned.buffer, aligned.byteOffset, count).slice();
  }

  private bytes(tensor: TensorProto): Uint8Array {
    if (tensor.dataLocation === 1) return readExternalTensor(tensor, this.dir, this.label);
    if (!tensor.rawData) throw new Error(`${this.label}: initializer "${tensor.name}" has no data`);
    return tensor.rawData;
  }
}

/**
 * Replaces the data of the named initializers of `model` with `source`'s (merged) values, kept
 * inline in the initializer's own element type. Returns how many were replaced.
 */
export function replaceInitializers(
  model: ModelProto,
  keys: readonly string[],
  source: WeightSource,
): number {
  const wanted = new Set(keys);
  let replaced = 0;
  for (const tensor of model.graph.initializer ?? []) {
    if (!tensor.name || !wanted.has(tensor.name)) continue;
    const values = source.readFloat32(tensor.name);
    const bits = tensor.dataType === FLOAT16 ? float32ArrayToFloat16(values) : values;
    tensor.rawData = new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
    tensor.floatData = undefined;
    tensor.dataLocation = undefined;
    tensor.externalData = undefined;
    replaced++;
  }
  return replaced;
}
