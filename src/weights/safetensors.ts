/**
 * safetensors reader and writer. The format: an 8-byte little-endian header length N, N bytes
 * of JSON mapping tensor names to {dtype, shape, data_offsets}, then the data buffer. Tensors
 * are read one at a time on request, so a multi-gigabyte checkpoint is never loaded whole.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { fileIdentity } from "../util/file-identity.js";
import { bfloat16ArrayToFloat32, float16ArrayToFloat32 } from "../util/float16.js";

/** Bytes per element of each safetensors dtype. */
export const SAFETENSORS_DTYPE_BYTES = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
});

export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_BYTES;

type IntegerReader = (view: DataView, at: number) => bigint;

/** How each integer dtype (and BOOL) is read as a bigint; U64 wraps into the int64 range. */
const INTEGER_READERS: Partial<Record<SafetensorsDType, IntegerReader>> = {
  I64: (view, at) => view.getBigInt64(at, true),
  U64: (view, at) => BigInt.asIntN(64, view.getBigUint64(at, true)),
  I32: (view, at) => BigInt(view.getInt32(at, true)),
  U32: (view, at) => BigInt(view.getUint32(at, true)),
  I16: (view, at) => BigInt(view.getInt16(at, true)),
  U16: (view, at) => BigInt(view.getUint16(at, true)),
  I8: (view, at) => BigInt(view.getInt8(at)),
  U8: (view, at) => BigInt(view.getUint8(at)),
  BOOL: (view, at) => BigInt(view.getUint8(at)),
};

export interface TensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Byte offsets relative to the start of the data buffer. */
  readonly begin: number;
  readonly end: number;
}

/** Random-access bytes: a file on disk or a buffer in memory. */
export interface ByteSource {
  readonly size: number;
  read(offset: number, length: number): Uint8Array;
  close(): void;
}

export class FileByteSource implements ByteSource {
  private fd: number | undefined;
  readonly size: number;

  constructor(readonly path: string) {
    this.fd = openSync(path, "r");
    this.size = fstatSync(this.fd).size;
  }

  read(offset: number, length: number): Uint8Array {
    if (this.fd === undefined) throw new Error(`${this.path}: file already closed`);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, out, done, length - done, offset + done);
      if (n === 0) throw new Error(`${this.path}: unexpected end of file`);
      done += n;
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

export class MemoryByteSource implements ByteSource {
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.byteLength;
  }
  read(offset: number, length: number): Uint8Array {
    return this.bytes.slice(offset, offset + length);
  }
  close(): void {}
}

const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export class SafetensorsFile {
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  private readonly dataStart: number;

  /** `label` names the file in error messages. */
  constructor(
    private readonly source: ByteSource,
    readonly label: string,
  ) {
    const fail = (why: string): never => {
      throw new Error(`${label}: not a valid safetensors file: ${why}`);
    };
    if (source.size < 8) fail(`only ${source.size} bytes, too short for the header length`);
    const lengthBytes = source.read(0, 8);
    const headerLength = Number(new DataView(lengthBytes.buffer).getBigUint64(0, true));
    if (headerLength < 2 || headerLength > MAX_HEADER_BYTES) {
      fail(`header length ${headerLength} is out of range`);
    }
    if (8 + headerLength > source.size) {
      fail(`header of ${headerLength} bytes runs past the end of the ${source.size}-byte file`);
    }
    let header: unknown;
    try {
      header = JSON.parse(
        new TextDecoder("utf-8", { fatal: true }).decode(source.read(8, headerLength)),
      );
    } catch (error) {
      fail(`header is not JSON (${(error as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      fail("header is not a JSON object");
    }
    this.dataStart = 8 + headerLength;
    const dataSize = source.size - this.dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
      if (name === "__metadata__") {
        metadata = parseMetadata(entry, fail);
        continue;
      }
      tensors.set(name, parseTensorInfo(name, entry, dataSize, fail));
    }
    checkNoOverlap([...tensors.values()], fail);
    this.tensors = tensors;
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    let source: FileByteSource;
    try {
      source = new FileByteSource(path);
    } catch (error) {
      throw new Error(
        `${path}: cannot open (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
      );
    }
    try {
      return new SafetensorsFile(source, path);
    } catch (error) {
      source.close();
      throw error;
    }
  }

  static fromBytes(bytes: Uint8Array, label = "<memory>"): SafetensorsFile {
    return new SafetensorsFile(new MemoryByteSource(bytes), label);
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }

  /** Identifies the file's content for caches without reading its data (see fileIdentity). */
  identity(): unknown {
    if (this.source instanceof FileByteSource) return fileIdentity(this.source.path);
    return { label: this.label, size: this.source.size, tensors: this.tensors.size };
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  info(name: string): TensorInfo {
    const info = this.tensors.get(name);
    if (!info) throw new Error(`${this.label}: no tensor named "${name}"`);
    return info;
  }

  /** The raw little-endian bytes of one tensor. */
  readBytes(name: string): Uint8Array {
    const info = this.info(name);
    return this.source.read(this.dataStart + info.begin, info.end - info.begin);
  }

  /** An F16 tensor's stored bits, without conversion; undefined for any other dtype. */
  readFloat16Bits(name: string): Uint16Array | undefined {
    if (this.info(name).dtype !== "F16") return undefined;
    let bytes = this.readBytes(name);
    // A Uint16Array view needs an even byte offset; an odd one is copied.
    if (bytes.byteOffset % 2 !== 0) bytes = bytes.slice();
    return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  }

  /** One floating-point tensor upcast to float32. */
  readFloat32(name: string): Float32Array {
    const info = this.info(name);
    const bytes = this.readBytes(name);
    switch (info.dtype) {
      case "F32":
        return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
      case "F16":
        return float16ArrayToFloat32(
          new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2),
        );
      case "BF16":
        return bfloat16ArrayToFloat32(
          new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2),
        );
      case "F64":
        return Float32Array.from(
          new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8),
        );
      default:
        throw new Error(
          `${this.label}: tensor "${name}" has dtype ${info.dtype}, expected a float type`,
        );
    }
  }

  /** One tensor as float64 (F64 exactly, other float types upcast). */
  readFloat64(name: string): Float64Array {
    const info = this.info(name);
    if (info.dtype === "F64") {
      const bytes = this.readBytes(name);
      return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
    }
    return Float64Array.from(this.readFloat32(name));
  }

  /** One integer tensor as bigint values. */
  readBigInt64(name: string): BigInt64Array {
    const info = this.info(name);
    const read = INTEGER_READERS[info.dtype];
    if (!read) {
      throw new Error(
        `${this.label}: tensor "${name}" has dtype ${info.dtype}, expected an integer type`,
      );
    }
    const bytes = this.readBytes(name);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const count = info.shape.reduce((a, b) => a * b, 1);
    const out = new BigInt64Array(count);
    const width = SAFETENSORS_DTYPE_BYTES[info.dtype];
    for (let i = 0; i < count; i++) out[i] = read(view, i * width);
    return out;
  }

  close(): void {
    this.source.close();
  }
}

function parseMetadata(entry: unknown, fail: (why: string) => never): Record<string, string> {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    fail("__metadata__ is not an object");
  }
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(entry as Record<string, unknown>)) {
    if (typeof value !== "string") fail(`__metadata__.${key} is not a string`);
    out[key] = value as string;
  }
  return out;
}

function parseTensorInfo(
  name: string,
  entry: unknown,
  dataSize: number,
  fail: (why: string) => never,
): TensorInfo {
  if (typeof entry !== "object" || entry === null) fail(`entry "${name}" is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !(dtype in SAFETENSORS_DTYPE_BYTES)) {
    fail(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    fail(`tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
    offsets[1] < offsets[0]
  ) {
    fail(`tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const typedDType = dtype as SafetensorsDType;
  const count = (shape as number[]).reduce((a, b) => a * b, 1);
  const expected = count * SAFETENSORS_DTYPE_BYTES[typedDType];
  if (end - begin !== expected) {
    fail(
      `tensor "${name}" spans ${end - begin} bytes, but ${dtype} [${shape.join(",")}] needs ${expected}`,
    );
  }
  if (end > dataSize) {
    fail(
      `tensor "${name}" ends at byte ${end} of the data, past its end at ${dataSize} (truncated file?)`,
    );
  }
  return { name, dtype: typedDType, shape: shape as number[], begin, end };
}

function checkNoOverlap(infos: TensorInfo[], fail: (why: string) => never): void {
  const sorted = [...infos].filter((t) => t.end > t.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      fail(`tensors "${sorted[i - 1].name}" and "${sorted[i].name}" overlap`);
    }
  }
}

export interface TensorToWrite {
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly data: ArrayBufferView;
}

/** Serialises tensors to safetensors bytes (tensors in the given order, 8-byte aligned header). */
export function encodeSafetensors(
  tensors: Readonly<Record<string, TensorToWrite>>,
  metadata?: Readonly<Record<string, string>>,
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, tensor] of Object.entries(tensors)) {
    const count = tensor.shape.reduce((a, b) => a * b, 1);
    const bytes = new Uint8Array(
      tensor.data.buffer,
      tensor.data.byteOffset,
      tensor.data.byteLength,
    );
    if (bytes.byteLength !== count * SAFETENSORS_DTYPE_BYTES[tensor.dtype]) {
      throw new Error(
        `tensor "${name}": ${bytes.byteLength} bytes do not match ${tensor.dtype} [${tensor.shape.join(",")}]`,
      );
    }
    header[name] = {
      dtype: tensor.dtype,
      shape: tensor.shape,
      data_offsets: [offset, offset + bytes.byteLength],
    };
    parts.push(bytes);
    offset += bytes.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const headerBytes = new Uint8Array(padded).fill(0x20);
  headerBytes.set(json);
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.byteLength;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
