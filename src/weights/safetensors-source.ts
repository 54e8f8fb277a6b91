/**
 * A `WeightSource` over one safetensors file or the shards of a sharded checkpoint. Only
 * headers are read when it opens; each tensor is read from disk when it is asked for.
 */
import type { SafetensorsFile } from "./safetensors.js";
import type { WeightInfo, WeightSource } from "./source.js";

export class SafetensorsWeightSource implements WeightSource {
  private readonly fileOf: ReadonlyMap<string, SafetensorsFile>;

  /**
   * `files`: the opened files; `keyFile`: which file holds each key (default: every tensor of
   * every file, a key present in two files being an error).
   */
  constructor(
    readonly label: string,
    private readonly files: readonly SafetensorsFile[],
    keyFile?: ReadonlyMap<string, SafetensorsFile>,
  ) {
    if (keyFile) {
      this.fileOf = keyFile;
      return;
    }
    const map = new Map<string, SafetensorsFile>();
    for (const file of files) {
      for (const key of file.keys()) {
        const other = map.get(key);
        if (other) {
          throw new Error(`${label}: weight "${key}" is in both ${other.label} and ${file.label}`);
        }
        map.set(key, file);
      }
    }
    this.fileOf = map;
  }

  identity(): unknown {
    return { files: this.files.map((f) => f.identity()), keys: this.fileOf.size };
  }

  keys(): string[] {
    return [...this.fileOf.keys()];
  }

  has(key: string): boolean {
    return this.fileOf.has(key);
  }

  info(key: string): WeightInfo {
    const info = this.file(key).info(key);
    return { dtype: info.dtype, shape: info.shape };
  }

  readFloat32(key: string): Float32Array {
    return this.file(key).readFloat32(key);
  }

  readFloat16(key: string): Uint16Array | undefined {
    const file = this.file(key);
    if (file.info(key).dtype !== "F16") return undefined;
    return this.readFloat16Bits(file, key);
  }

  /** The files behind this source, for closing. */
  get openFiles(): readonly SafetensorsFile[] {
    return this.files;
  }

  close(): void {
    for (const file of this.files) file.close();
  }

  private readFloat16Bits(file: SafetensorsFile, key: string): Uint16Array {
    const bytes = file.readBytes(key);
    if (bytes.byteOffset % 2 === 0) {
      return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
    }
    return new Uint16Array(bytes.slice().buffer);
  }

  private file(key: string): SafetensorsFile {
    const file = this.fileOf.get(key);
    if (!file) throw new Error(`${this.label}: no weight named "${key}"`);
    return file;
  }
}
