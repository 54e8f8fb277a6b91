// Node-only file helpers for PNG images; the rest of src/image runs in the browser too.
import { readFileSync } from "node:fs";
import { writeBytesAtomically } from "../util/atomic-write.js";
import { type DecodedPng, decodePng } from "./png.js";

/** Reading limits: `maxPixels` refuses larger images from their header, before decoding. */
export interface ReadPngOptions {
  readonly maxPixels?: number;
}

/** Reads and decodes a PNG file; errors name the file and say what is wrong in one line. */
export function readPngFile(path: string, options: ReadPngOptions = {}): DecodedPng {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new Error(`${path}: no such file`);
    if (code === "EISDIR") throw new Error(`${path}: is a folder, not a PNG file`);
    if (code === "EACCES") throw new Error(`${path}: permission denied`);
    throw new Error(`${path}: cannot read (${(error as Error).message})`);
  }
  // The header's size, read before decoding: a small file may hold a huge image.
  const header = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ihdr = bytes.length >= 24 && String.fromCharCode(...bytes.subarray(12, 16)) === "IHDR";
  if (options.maxPixels !== undefined && ihdr) {
    const width = header.getUint32(16);
    const height = header.getUint32(20);
    if (width * height > options.maxPixels)
      throw new Error(
        `${path}: ${width}x${height} is more than the ${(options.maxPixels / 1e6).toFixed(1)} megapixels an input image may have; scale it down first`,
      );
  }
  return decodePng(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path);
}

/** Writes a PNG to a temporary name beside `path`, then renames: no partial file is left. */
export function writePngFile(path: string, bytes: Uint8Array): void {
  writeBytesAtomically(path, bytes);
}
