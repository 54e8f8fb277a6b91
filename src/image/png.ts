// PNG encoding and decoding for generated images and img2img init images. Decoding the pixels
// of any PNG a user may bring (interlacing, palettes, every bit depth) is fast-png's; the chunk
// layer beside it adds clear errors and the text chunks that carry generation parameters.
// Encoding is ours, on fflate's deflate: fast-png writes every row unfiltered, which makes
// generated images (smooth gradients) about four times larger than per-row filtering does.
// No Node-only imports: this runs in the browser too.
import { convertIndexedToRgb, decode as decodePixels } from "fast-png";
import { zlibSync } from "fflate";
import {
  encodeInternationalTextChunk,
  encodePngChunk,
  encodeTextChunk,
  isLatin1,
  PNG_SIGNATURE,
  readPngChunks,
  readTextChunks,
} from "./png-chunks.js";

/** 8-bit pixels, interleaved, rows top to bottom. */
export interface Image8 {
  width: number;
  height: number;
  /** 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA; when omitted, inferred from the data length. */
  channels?: number;
  data: Uint8Array | Uint8ClampedArray;
}

export interface DecodedPng {
  width: number;
  height: number;
  /** 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA (palette images become 3, or 4 with transparency). */
  channels: 1 | 2 | 3 | 4;
  /** Always 8 bits per sample, whatever the file's bit depth. */
  data: Uint8Array;
  /** tEXt, zTXt and iTXt entries by keyword. */
  text: Record<string, string>;
}

export interface PngEncodeOptions {
  /** Written as tEXt when the value is Latin-1, else as iTXt (what Pillow's add_text does). */
  text?: Record<string, string>;
  /** Always written as UTF-8 iTXt. */
  itxt?: Record<string, string>;
  /** Deflate level 0-9 (default 6). */
  compressionLevel?: number;
}

// Bit depths allowed per colour type (gray, RGB, palette, gray + alpha, RGBA).
const ALLOWED_DEPTHS: Readonly<Record<number, readonly number[]>> = Object.freeze({
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
});

/** Decoders allocate width x height x 4 bytes and more; refuse sizes no model can use. */
const MAX_PIXELS = 1 << 28;

function channelsOf(image: Image8): number {
  const { width, height, data } = image;
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new Error(`cannot encode PNG: invalid size ${width}x${height}`);
  }
  const channels = image.channels ?? data.length / (width * height);
  if (![1, 2, 3, 4].includes(channels) || data.length !== width * height * channels) {
    throw new Error(
      `cannot encode PNG: ${data.length} bytes do not make a ${width}x${height} image with 1 to 4 channels`,
    );
  }
  return channels;
}

// Colour type by channel count: gray, gray + alpha, RGB, RGBA.
const COLOR_TYPE_OF_CHANNELS = [0, 0, 4, 2, 6];

function paethPredictor(left: number, up: number, upLeft: number): number {
  const p = left + up - upLeft;
  const toLeft = Math.abs(p - left);
  const toUp = Math.abs(p - up);
  const toUpLeft = Math.abs(p - upLeft);
  if (toLeft <= toUp && toLeft <= toUpLeft) return left;
  return toUp <= toUpLeft ? up : upLeft;
}

/**
 * Filters every row with the filter type (PNG specification 9.2) whose output has the
 * smallest sum of absolute values read as signed bytes: the heuristic libpng uses, which
 * suits photographic images.
 */
function filterRows(data: Uint8Array, width: number, height: number, channels: number): Uint8Array {
  const rowLength = width * channels;
  const out = new Uint8Array(height * (rowLength + 1));
  const candidates = Array.from({ length: 5 }, () => new Uint8Array(rowLength));
  const zeros = new Uint8Array(rowLength);
  for (let y = 0; y < height; y++) {
    const row = data.subarray(y * rowLength, (y + 1) * rowLength);
    const up = y > 0 ? data.subarray((y - 1) * rowLength, y * rowLength) : zeros;
    const c = channels;
    const [none, sub, upFilter, average, paeth] = candidates;
    for (let i = 0; i < rowLength; i++) none[i] = row[i];
    for (let i = 0; i < c; i++) {
      sub[i] = row[i];
      upFilter[i] = row[i] - up[i];
      average[i] = row[i] - (up[i] >> 1);
      paeth[i] = row[i] - up[i];
    }
    for (let i = c; i < rowLength; i++) {
      const left = row[i - c];
      sub[i] = row[i] - left;
      upFilter[i] = row[i] - up[i];
      average[i] = row[i] - ((left + up[i]) >> 1);
      paeth[i] = row[i] - paethPredictor(left, up[i], up[i - c]);
    }
    let best = 0;
    let bestCost = Number.POSITIVE_INFINITY;
    for (let type = 0; type < 5; type++) {
      const filtered = candidates[type];
      let cost = 0;
      for (let i = 0; i < rowLength; i++) {
        const value = filtered[i];
        cost += value < 128 ? value : 256 - value;
      }
      if (cost < bestCost) {
        best = type;
        bestCost = cost;
      }
    }
    out[y * (rowLength + 1)] = best;
    out.set(candidates[best], y * (rowLength + 1) + 1);
  }
  return out;
}

/**
 * Encodes 8-bit pixels as PNG. Text chunks go right after IHDR, before the image data, where
 * Pillow (and so the popular web UIs) read them without decoding the pixels.
 */
export function encodePng(image: Image8, options: PngEncodeOptions = {}): Uint8Array {
  const channels = channelsOf(image);
  const data =
    image.data instanceof Uint8Array
      ? image.data
      : new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength);
  const level = options.compressionLevel ?? 6;
  if (!Number.isInteger(level) || level < 0 || level > 9) {
    throw new Error(`cannot encode PNG: compression level must be an integer 0-9, got ${level}`);
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, image.width);
  view.setUint32(4, image.height);
  header[8] = 8;
  header[9] = COLOR_TYPE_OF_CHANNELS[channels];
  const chunks = [PNG_SIGNATURE, encodePngChunk("IHDR", header)];
  for (const [keyword, value] of Object.entries(options.text ?? {})) {
    chunks.push(
      isLatin1(value)
        ? encodeTextChunk(keyword, value)
        : encodeInternationalTextChunk(keyword, value),
    );
  }
  for (const [keyword, value] of Object.entries(options.itxt ?? {})) {
    chunks.push(encodeInternationalTextChunk(keyword, value));
  }
  const filtered = filterRows(data, image.width, image.height, channels);
  const compressed = zlibSync(filtered, { level: level as 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 });
  chunks.push(encodePngChunk("IDAT", compressed));
  chunks.push(encodePngChunk("IEND", new Uint8Array(0)));
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

function readHeader(data: Uint8Array, label: string) {
  if (data.length !== 13) throw new Error(`${label}: invalid PNG (IHDR has ${data.length} bytes)`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const header = {
    width: view.getUint32(0),
    height: view.getUint32(4),
    bitDepth: data[8],
    colorType: data[9],
    compression: data[10],
    filter: data[11],
    interlace: data[12],
  };
  const depths = ALLOWED_DEPTHS[header.colorType];
  if (!depths) throw new Error(`${label}: invalid PNG (unknown color type ${header.colorType})`);
  if (!depths.includes(header.bitDepth)) {
    throw new Error(
      `${label}: invalid PNG (bit depth ${header.bitDepth} is not allowed with color type ${header.colorType})`,
    );
  }
  if (header.width < 1 || header.height < 1) {
    throw new Error(`${label}: invalid PNG (size ${header.width}x${header.height})`);
  }
  if (header.width * header.height > MAX_PIXELS) {
    throw new Error(
      `${label}: the image is too large (${header.width}x${header.height}); resize it below ${MAX_PIXELS} pixels`,
    );
  }
  if (header.compression !== 0 || header.filter !== 0 || header.interlace > 1) {
    throw new Error(`${label}: invalid PNG (unknown compression, filter or interlace method)`);
  }
  return header;
}

/** Expands 1, 2 or 4-bit gray samples (rows padded to whole bytes) to 0-255. */
function unpackGray(packed: ArrayLike<number>, width: number, height: number, depth: number) {
  const out = new Uint8Array(width * height);
  const rowBytes = Math.ceil((width * depth) / 8);
  const max = (1 << depth) - 1;
  const scale = 255 / max;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * depth;
      const byte = packed[y * rowBytes + (bit >> 3)];
      const value = (byte >> (8 - depth - (bit & 7))) & max;
      out[y * width + x] = Math.round(value * scale);
    }
  }
  return out;
}

/**
 * Decodes a PNG to 8-bit samples. Every standard format is accepted: gray, gray + alpha, RGB,
 * RGBA and palette images, bit depths 1 to 16, interlaced or not. 16-bit samples keep their
 * high byte (as Pillow does when it opens such files as RGB/RGBA); palettes expand to RGB, or
 * RGBA when tRNS gives transparency. tRNS colour keys of gray and RGB images are ignored.
 * `label` (a file name, usually) starts every error message.
 */
export function decodePng(bytes: Uint8Array, label: string): DecodedPng {
  const chunks = readPngChunks(bytes, label);
  const header = readHeader(chunks[0].data, label);
  if (!chunks.some((chunk) => chunk.type === "IDAT")) {
    throw new Error(`${label}: invalid PNG (no image data)`);
  }
  if (header.colorType === 3 && !chunks.some((chunk) => chunk.type === "PLTE")) {
    throw new Error(`${label}: invalid PNG (palette image without a PLTE chunk)`);
  }
  const text = readTextChunks(chunks);
  let decoded: ReturnType<typeof decodePixels>;
  let data: Uint8Array;
  try {
    decoded = decodePixels(bytes);
    if (header.colorType === 3) {
      data = convertIndexedToRgb(decoded);
    } else if (header.bitDepth === 16) {
      data = new Uint8Array(decoded.data.length);
      for (let i = 0; i < data.length; i++) data[i] = decoded.data[i] >> 8;
    } else if (header.bitDepth < 8) {
      data = unpackGray(decoded.data, header.width, header.height, header.bitDepth);
    } else {
      data = decoded.data as Uint8Array;
    }
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`${label}: cannot decode the PNG image data (${reason})`);
  }
  const pixels = header.width * header.height;
  const channels = data.length / pixels;
  if (channels !== 1 && channels !== 2 && channels !== 3 && channels !== 4) {
    throw new Error(`${label}: cannot decode the PNG image data (wrong amount of pixel data)`);
  }
  return { width: header.width, height: header.height, channels, data, text };
}

/** True when the bytes start with the PNG signature. */
export function hasPngSignature(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && PNG_SIGNATURE.every((value, i) => bytes[i] === value);
}
