/**
 * Writing and reading ONNX model files. Large models keep their weights in one external data
 * file next to the model (`model.onnx` -> `model.onnx_data`), as the ONNX external-data
 * convention describes, so no protobuf message passes the 2 GB limit. Files are written under
 * temporary names and renamed at the end, so a failed or interrupted write leaves nothing.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { temporaryName, writeAll, writeFileAtomically } from "../util/atomic-write.js";
import { type GraphBuilder, inlineTensor, type ModelOptions, modelShell } from "./builder.js";
import {
  collectAllTensors,
  type ExternalTensor,
  externalLocation,
  externalTensors,
} from "./external-data.js";
import {
  decodeModel,
  encodeModel,
  type GraphProto,
  type ModelProto,
  type TensorProto,
} from "./proto.js";
import { byteLengthOf, ELEMENT_TYPES } from "./tensor-data.js";

/** Initializer bytes above which `auto` switches to external data (protobuf's limit is 2 GiB). */
export const EXTERNAL_DATA_THRESHOLD = 1536 * 1024 * 1024;

/** Tensors smaller than this stay inside the model file even with external data. */
export const INLINE_TENSOR_BYTES = 1024;

export type ExternalDataMode = "auto" | "always" | "never";

export interface SaveOptions extends ModelOptions {
  readonly externalData?: ExternalDataMode;
}

/** The whole model with inline weights, as bytes (for in-memory sessions of small models). */
export function buildModelBytes(builder: GraphBuilder, options: ModelOptions = {}): Uint8Array {
  const total = builder.initializers.reduce((sum, init) => sum + byteLengthOf(init.data), 0);
  if (total > EXTERNAL_DATA_THRESHOLD) {
    throw new Error(
      `model weights are ${formatBytes(total)}, too large for one protobuf; save it to a file instead`,
    );
  }
  return encodeModel(buildModelProto(builder, options));
}

/**
 * The whole model with inline weights as a message in memory, never encoded: no protobuf size
 * limit applies (for engines that read the message itself, like the kernels engine).
 */
export function buildModelProto(builder: GraphBuilder, options: ModelOptions = {}): ModelProto {
  const initializers = builder.initializers.map((init) => inlineTensor(init));
  return modelShell(builder.toGraphProto(initializers), options);
}

export function externalDataPath(modelPath: string): string {
  const name = basename(modelPath).replace(/\.onnx$/i, "");
  return join(dirname(modelPath), `${name}.onnx_data`);
}

/**
 * Writes the built model to `path`, streaming weights one at a time. Returns the files written.
 */
export function saveModel(
  builder: GraphBuilder,
  path: string,
  options: SaveOptions = {},
): string[] {
  const total = builder.initializers.reduce((sum, init) => sum + byteLengthOf(init.data), 0);
  const external =
    options.externalData === "always" ||
    (options.externalData !== "never" && total > EXTERNAL_DATA_THRESHOLD);
  if (!external && total > EXTERNAL_DATA_THRESHOLD) {
    throw new Error(`model weights are ${formatBytes(total)}: too large without external data`);
  }
  if (!external) return writeInline(path, buildModelBytes(builder, options));
  const dataName = basename(externalDataPath(path));
  return writeWithDataFile(path, (append) => {
    const initializers = builder.initializers.map((init): TensorProto => {
      const bytes = init.data.bytes();
      // Small constants (shapes, axes) stay inline: runtimes read them while optimising the graph.
      if (bytes.byteLength < INLINE_TENSOR_BYTES) return inlineTensor(init, bytes);
      return {
        name: init.name,
        dims: [...init.data.dims],
        dataType: ELEMENT_TYPES[init.data.type].dataType,
        dataLocation: 1,
        externalData: externalEntries(dataName, append(bytes), bytes.byteLength),
      };
    });
    return modelShell(builder.toGraphProto(initializers), options);
  });
}

/** Writes an already assembled model (for example a patched one), moving big weights out when needed. */
export function writeModel(
  model: ModelProto,
  path: string,
  mode: ExternalDataMode = "auto",
): string[] {
  const tensors = collectInlineTensors(model.graph);
  const total = tensors.reduce((sum, t) => sum + (t.rawData?.byteLength ?? 0), 0);
  const external = mode === "always" || (mode === "auto" && total > EXTERNAL_DATA_THRESHOLD);
  if (!external) return writeInline(path, encodeModel(model));
  const dataName = basename(externalDataPath(path));
  const saved = tensors.map((t) => ({ tensor: t, rawData: t.rawData }));
  try {
    return writeWithDataFile(path, (append) => {
      for (const tensor of tensors) {
        const bytes = tensor.rawData;
        if (!bytes || bytes.byteLength < INLINE_TENSOR_BYTES) continue;
        tensor.externalData = externalEntries(dataName, append(bytes), bytes.byteLength);
        tensor.rawData = undefined;
        tensor.dataLocation = 1;
      }
      return model;
    });
  } finally {
    for (const { tensor, rawData } of saved) {
      if (tensor.dataLocation === 1 && rawData) {
        tensor.rawData = rawData;
        tensor.dataLocation = undefined;
        tensor.externalData = undefined;
      }
    }
  }
}

function writeInline(path: string, bytes: Uint8Array): string[] {
  writeFileAtomically(path, (fd) => writeAll(fd, bytes));
  return [path];
}

/**
 * Writes a model whose big weights go to its external data file: `place` appends each such
 * tensor's bytes with `append`, which returns the offset they were written at, and gives the
 * model that refers to them. The data file is written under a temporary name and renamed once
 * the model is written; on any error it is removed.
 */
function writeWithDataFile(
  path: string,
  place: (append: (bytes: Uint8Array) => number) => ModelProto,
): string[] {
  const dataPath = externalDataPath(path);
  const tempData = temporaryName(dataPath);
  const fd = openSync(tempData, "w");
  let closed = false;
  try {
    let offset = 0;
    const model = place((bytes) => {
      const padding = (64 - (offset % 64)) % 64; // aligned offsets let runtimes map the file
      if (padding > 0) writeAll(fd, new Uint8Array(padding));
      offset += padding;
      writeAll(fd, bytes);
      const at = offset;
      offset += bytes.byteLength;
      return at;
    });
    closed = true;
    closeSync(fd);
    const bytes = encodeModel(model);
    writeFileAtomically(path, (out) => writeAll(out, bytes));
    renameSync(tempData, dataPath);
    return [path, dataPath];
  } catch (error) {
    if (!closed) closeSync(fd);
    rmSync(tempData, { force: true });
    throw error;
  }
}

/** Reads a model file; external data is loaded into the tensors when `loadExternalData` is set. */
export function readModel(path: string, loadExternalData = true): ModelProto {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    throw new Error(
      `${path}: cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
  const model = decodeModel(bytes, path);
  if (loadExternalData) resolveExternalData(model, dirname(path), path);
  return model;
}

/**
 * Checks, without reading the weights, that every external tensor of the model at `path` lies
 * within its data file: a truncated `weights.pb` or `.onnx_data` fails here, naming the tensor.
 */
export function checkExternalData(path: string): void {
  const sizeOf = dataFiles(dirname(path), path, (file) => statSync(file).size);
  for (const { tensor, location, offset, length = 0 } of externalTensors(
    readModel(path, false),
    path,
  )) {
    const size = sizeOf(location);
    if (offset + length > size)
      throw new Error(
        `${path}: tensor "${tensor.name}" runs past the end of ${location} (${offset + length} bytes needed, ${size} present); the file is truncated`,
      );
  }
}

/**
 * Reads each external tensor's bytes from its data file, tensor by tensor (a data file may be
 * larger than one buffer can hold: an SDXL UNet's is 5 GB in fp16).
 */
function resolveExternalData(model: ModelProto, directory: string, label: string): void {
  const fds: number[] = [];
  const fileOf = dataFiles(directory, label, (file) => {
    const fd = openSync(file, "r");
    fds.push(fd);
    return { fd, size: fstatSync(fd).size };
  });
  try {
    for (const external of externalTensors(model, label)) {
      const { tensor } = external;
      tensor.rawData = externalBytes(external, fileOf(external.location), label);
      tensor.dataLocation = undefined;
      tensor.externalData = undefined;
    }
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

/** The bytes of one external tensor of a model in `directory` (its data file read for it alone). */
export function readExternalTensor(
  tensor: TensorProto,
  directory: string,
  label: string,
): Uint8Array {
  const external = externalLocation(tensor, label);
  const fd = openSync(join(directory, external.location), "r");
  try {
    return externalBytes(external, { fd, size: fstatSync(fd).size }, label);
  } finally {
    closeSync(fd);
  }
}

/** An external tensor's bytes, from its data file open as `fd`. */
function externalBytes(
  { tensor, location, offset, length }: ExternalTensor,
  { fd, size }: { readonly fd: number; readonly size: number },
  label: string,
): Uint8Array {
  const end = offset + (length ?? size - offset);
  if (end > size)
    throw new Error(`${label}: tensor "${tensor.name}" runs past the end of ${location}`);
  const bytes = new Uint8Array(end - offset);
  for (let done = 0; done < bytes.byteLength; ) {
    const n = readSync(fd, bytes, done, bytes.byteLength - done, offset + done);
    if (n === 0) throw new Error(`${label}: ${location} ended while reading "${tensor.name}"`);
    done += n;
  }
  return bytes;
}

/** Opens each external data file once, by its location; `open` takes what is needed of it. */
function dataFiles<T>(
  directory: string,
  label: string,
  open: (file: string) => T,
): (location: string) => T {
  const opened = new Map<string, T>();
  return (location) => {
    const file = join(directory, location);
    let value = opened.get(file);
    if (value === undefined) {
      if (!existsSync(file)) throw new Error(`${label}: external data file ${location} is missing`);
      value = open(file);
      opened.set(file, value);
    }
    return value;
  };
}

function collectInlineTensors(graph: GraphProto): TensorProto[] {
  return collectAllTensors(graph).filter((t) => t.dataLocation !== 1);
}

function externalEntries(location: string, offset: number, length: number) {
  return [
    { key: "location", value: location },
    { key: "offset", value: String(offset) },
    { key: "length", value: String(length) },
  ];
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${bytes} B`;
}
