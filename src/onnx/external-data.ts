/**
 * External data of ONNX models (tensors whose bytes lie in a file beside the model), without a
 * filesystem: listing them, and filling them in from bytes a caller already has (a browser that
 * fetched the data file). Node's file reading is in model-io.ts.
 */
import type { GraphProto, ModelProto, TensorProto } from "./proto.js";

/** A tensor whose bytes lie in an external data file, and where: the file relative to the model. */
export interface ExternalTensor {
  readonly tensor: TensorProto;
  readonly location: string;
  readonly offset: number;
  /** Absent: to the end of the file. */
  readonly length: number | undefined;
}

export function externalTensors(model: ModelProto, label: string): ExternalTensor[] {
  return collectAllTensors(model.graph)
    .filter((tensor) => tensor.dataLocation === 1)
    .map((tensor) => externalLocation(tensor, label));
}

/** Where the bytes of an external tensor lie. */
export function externalLocation(tensor: TensorProto, label: string): ExternalTensor {
  const entries = new Map((tensor.externalData ?? []).map((e) => [e.key, e.value]));
  const location = entries.get("location");
  if (!location)
    throw new Error(`${label}: tensor "${tensor.name}" is external but names no location`);
  const length = entries.get("length");
  return {
    tensor,
    location,
    offset: Number(entries.get("offset") ?? 0),
    length: length === undefined ? undefined : Number(length),
  };
}

/**
 * Fills every external tensor of `model` from `data`, the bytes of its data file at `path` (the
 * location the tensors name): the model then holds all its weights.
 */
export function attachExternalData(
  model: ModelProto,
  file: { readonly path: string; readonly data: Uint8Array },
  label = "model",
): void {
  for (const { tensor, location, offset, length } of externalTensors(model, label)) {
    if (location !== file.path)
      throw new Error(`${label}: tensor "${tensor.name}" is in ${location}, not in ${file.path}`);
    const end = offset + (length ?? file.data.byteLength - offset);
    if (end > file.data.byteLength)
      throw new Error(`${label}: tensor "${tensor.name}" runs past the end of ${location}`);
    tensor.rawData = file.data.subarray(offset, end);
    tensor.dataLocation = undefined;
    tensor.externalData = undefined;
  }
}

/** Every TensorProto in a graph: initializers and tensor attributes, subgraphs included. */
export function collectAllTensors(graph: GraphProto): TensorProto[] {
  const out: TensorProto[] = [...(graph.initializer ?? [])];
  for (const node of graph.node) {
    for (const attribute of node.attribute ?? []) {
      if (attribute.t) out.push(attribute.t);
      if (attribute.g) out.push(...collectAllTensors(attribute.g));
      for (const sub of attribute.graphs ?? []) out.push(...collectAllTensors(sub));
    }
  }
  return out;
}
