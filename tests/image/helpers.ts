// Test images and hand-built PNG files for tests/image.
import { readFileSync } from "node:fs";
import { deflateSync } from "node:zlib";
import type { FloatImage } from "../../src/image/float-image.js";
import { encodePngChunk, PNG_SIGNATURE } from "../../src/image/png-chunks.js";

export interface Reference {
  resize: Record<string, number[]>;
  ssim: Record<string, number>;
  pillowPng: string;
  pillowPngPixels: number[];
}

/** Values computed by make-reference.py (Pillow, scikit-image). */
export const REFERENCE: Reference = JSON.parse(
  readFileSync(new URL("./reference.json", import.meta.url), "utf8"),
) as Reference;

/** A smooth, deterministic test image; the same formula as make-reference.py. */
export function pattern(width: number, height: number, seed: number): FloatImage {
  const data = new Float32Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < 3; c++) {
        data[(y * width + x) * 3 + c] =
          0.5 +
          0.4 * Math.sin(0.3 * x + 0.2 * y + c + seed) * Math.cos(0.17 * y - 0.1 * x * (c + 1));
      }
    }
  }
  return { width, height, data };
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

/** Applies PNG filter `type` (0-4) to `row` given the previous unfiltered row. */
export function filterRow(type: number, row: Uint8Array, previous: Uint8Array, bpp: number) {
  const out = new Uint8Array(row.length + 1);
  out[0] = type;
  for (let i = 0; i < row.length; i++) {
    const a = i >= bpp ? row[i - bpp] : 0;
    const b = previous[i];
    const c = i >= bpp ? previous[i - bpp] : 0;
    const predictor = [0, a, b, (a + b) >> 1, paeth(a, b, c)][type];
    out[i + 1] = (row[i] - predictor) & 0xff;
  }
  return out;
}

export interface RawPng {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
  /** Unfiltered scanlines, each ceil(width * bits per pixel / 8) bytes. */
  rows: Uint8Array[];
  /** Filter type per row; default cycles through 0-4. */
  filters?: number[];
  palette?: number[][];
  transparency?: number[];
  extraChunks?: Uint8Array[];
}

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** Builds a non-interlaced PNG from raw scanlines, with the given filter per row. */
export function buildPng(png: RawPng): Uint8Array {
  const bpp = Math.max(1, (CHANNELS[png.colorType] * png.bitDepth) / 8);
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, png.width);
  view.setUint32(4, png.height);
  header[8] = png.bitDepth;
  header[9] = png.colorType;
  const filtered: Uint8Array[] = [];
  let previous: Uint8Array = new Uint8Array(png.rows[0].length);
  png.rows.forEach((row, y) => {
    filtered.push(filterRow(png.filters?.[y] ?? y % 5, row, previous, bpp));
    previous = row;
  });
  const chunks = [PNG_SIGNATURE, encodePngChunk("IHDR", header)];
  if (png.palette) chunks.push(encodePngChunk("PLTE", Uint8Array.from(png.palette.flat())));
  if (png.transparency) chunks.push(encodePngChunk("tRNS", Uint8Array.from(png.transparency)));
  chunks.push(...(png.extraChunks ?? []));
  chunks.push(encodePngChunk("IDAT", deflateSync(concat(filtered))));
  chunks.push(encodePngChunk("IEND", new Uint8Array(0)));
  return concat(chunks);
}

/** Test bytes 0..255 spread over an image of the given size and channel count. */
export function byteRamp(length: number, step = 37): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * step + (i >> 3)) & 0xff;
  return out;
}
