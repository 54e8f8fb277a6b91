/**
 * A `WeightSource` over one safetensors file or the shards of a sharded checkpoint. Only
 * headers are read when it opens; each tensor is read from disk when it is asked for.
 */
import type { SafetensorsFile } from "./safetensors.js";
import { KeyedWeightSource, type WeightInfo } from "./source.js";

export class SafetensorsWeightSource extends KeyedWeightSource<SafetensorsFile> {
  /**
   * `files`: the opened files; `keyFile`: which file holds each key (default: every tensor of
   * every file, a key present in two files being an error).
   */
  constructor(
    label: string,
    private readonly files: readonly SafetensorsFile[],
    keyFile?: ReadonlyMap<string, SafetensorsFile>,
  ) {
    super(label, keyFile ?? fileOfEachKey(label, files));
  }

  identity(): unknown {
    return { files: this.files.map((f) => f.identity()), keys: this.entries.size };
  }

  info(key: string): WeightInfo {
    const info = this.entry(key).info(key);
    return { dtype: info.dtype, shape: info.shape };
  }

  readFloat32(key: string): Float32Array {
    return this.entry(key).readFloat32(key);
  }

  readFloat16(key: string): Uint16Array | undefined {
    return this.entry(key).readFloat16Bits(key);
  }

  /** The files behind this source, for closing. */
  get openFiles(): readonly SafetensorsFile[] {
    return this.files;
  }

  close(): void {
    for (const file of this.files) file.close();
  }
}

/** Every tensor of every file; a key present in two files is an error. */
function fileOfEachKey(label: string, files: readonly SafetensorsFile[]) {
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
  return map;
}
