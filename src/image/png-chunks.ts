// PNG chunk layer (W3C PNG specification, 3rd edition, sections 5 and 11.3.3): structure and
// checksum validation with one-line errors, and the text chunks (tEXt, zTXt, iTXt) that carry
// generation parameters. Pixel data is left to the decoder; this layer only sees chunks.
import { unzlibSync } from "fflate";

export const PNG_SIGNATURE = Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

export interface PngChunk {
  type: string;
  data: Uint8Array;
  /** Byte offset of the chunk's length field in the file. */
  offset: number;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 as PNG uses it (ISO 3309 polynomial, reflected, inverted in and out). */
export function crc32(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let crc = 0xffffffff;
  for (let i = start; i < end; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function startsWith(bytes: Uint8Array, prefix: ArrayLike<number>, at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[at + i] !== prefix[i]) return false;
  return true;
}

/** Names common non-PNG formats so the error can say what the file is. */
function sniffFormat(bytes: Uint8Array): string | undefined {
  const ascii = (text: string) => Array.from(text, (c) => c.charCodeAt(0));
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "JPEG";
  if (startsWith(bytes, ascii("GIF8"))) return "GIF";
  if (startsWith(bytes, ascii("RIFF")) && startsWith(bytes, ascii("WEBP"), 8)) return "WebP";
  if (startsWith(bytes, ascii("BM"))) return "BMP";
  if (startsWith(bytes, ascii("ftypavif"), 4)) return "AVIF";
  return undefined;
}

function isChunkTypeByte(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}

/**
 * Splits a PNG file into chunks, checking the signature, every length and checksum, that IHDR
 * comes first and that IEND is present. Bytes after IEND are ignored, as decoders commonly do.
 */
export function readPngChunks(bytes: Uint8Array, label: string): PngChunk[] {
  if (!startsWith(bytes, PNG_SIGNATURE)) {
    const format = sniffFormat(bytes);
    if (bytes.length === 0) throw new Error(`${label}: the file is empty, not a PNG image`);
    if (format) throw new Error(`${label}: this is a ${format} image, not PNG; convert it to PNG`);
    if (startsWith(bytes, PNG_SIGNATURE.subarray(0, bytes.length)) && bytes.length < 8) {
      throw new Error(`${label}: truncated PNG (the file ends inside the signature)`);
    }
    throw new Error(`${label}: not a PNG image (the file does not start with the PNG signature)`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const chunks: PngChunk[] = [];
  let offset = PNG_SIGNATURE.length;
  for (;;) {
    if (offset + 8 > bytes.length) {
      throw new Error(
        `${label}: truncated PNG (the file ends after ${bytes.length} bytes, before the IEND chunk); it is incomplete`,
      );
    }
    const length = view.getUint32(offset);
    for (let i = 4; i < 8; i++) {
      if (!isChunkTypeByte(bytes[offset + i])) {
        throw new Error(`${label}: corrupt PNG (invalid chunk type at byte ${offset + 4})`);
      }
    }
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const dataEnd = offset + 8 + length;
    if (length > 0x7fffffff || dataEnd + 4 > bytes.length) {
      throw new Error(
        `${label}: truncated PNG (the ${type} chunk at byte ${offset} runs past the end of the file); it is incomplete`,
      );
    }
    if (crc32(bytes, offset + 4, dataEnd) !== view.getUint32(dataEnd)) {
      throw new Error(
        `${label}: corrupt PNG (checksum mismatch in the ${type} chunk at byte ${offset})`,
      );
    }
    if (chunks.length === 0 && type !== "IHDR") {
      throw new Error(`${label}: invalid PNG (the first chunk is ${type}, expected IHDR)`);
    }
    chunks.push({ type, data: bytes.subarray(offset + 8, dataEnd), offset });
    offset = dataEnd + 4;
    if (type === "IEND") return chunks;
  }
}

/** Serializes one chunk: length, type, data, CRC over type and data. */
export function encodePngChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out, 4, 8 + data.length));
  return out;
}

const utf8Decoder = new TextDecoder("utf-8");
const utf8Encoder = new TextEncoder();

/** True when every character fits in ISO 8859-1, the only encoding tEXt allows. */
export function isLatin1(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false;
  return true;
}

/**
 * Keywords are 1-79 printable Latin-1 characters without leading, trailing or consecutive
 * spaces (PNG specification 11.3.3.2).
 */
export function checkTextKeyword(keyword: string): void {
  const fail = (why: string) => {
    throw new Error(`PNG text keyword ${JSON.stringify(keyword)} is invalid: ${why}`);
  };
  if (keyword.length < 1 || keyword.length > 79) fail("it must have 1 to 79 characters");
  for (let i = 0; i < keyword.length; i++) {
    const code = keyword.charCodeAt(i);
    if (!((code >= 0x20 && code <= 0x7e) || (code >= 0xa1 && code <= 0xff))) {
      fail("it may only hold printable Latin-1 characters");
    }
  }
  if (keyword.startsWith(" ") || keyword.endsWith(" ") || keyword.includes("  ")) {
    fail("no leading, trailing or consecutive spaces are allowed");
  }
}

// TextDecoder's "latin1" is really windows-1252, which would change bytes 0x80-0x9f.
function latin1String(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** A tEXt chunk: keyword, NUL, Latin-1 text. */
export function encodeTextChunk(keyword: string, text: string): Uint8Array {
  checkTextKeyword(keyword);
  if (!isLatin1(text)) {
    throw new Error(`PNG tEXt value of ${JSON.stringify(keyword)} is not Latin-1; use iTXt`);
  }
  if (text.includes("\0")) {
    throw new Error(`PNG text value of ${JSON.stringify(keyword)} contains a NUL character`);
  }
  const key = latin1Bytes(keyword);
  const data = new Uint8Array(key.length + 1 + text.length);
  data.set(key, 0);
  data.set(latin1Bytes(text), key.length + 1);
  return encodePngChunk("tEXt", data);
}

/** An uncompressed iTXt chunk with empty language tag and translated keyword; UTF-8 text. */
export function encodeInternationalTextChunk(keyword: string, text: string): Uint8Array {
  checkTextKeyword(keyword);
  if (text.includes("\0")) {
    throw new Error(`PNG text value of ${JSON.stringify(keyword)} contains a NUL character`);
  }
  const key = latin1Bytes(keyword);
  const value = utf8Encoder.encode(text);
  // keyword NUL, compression flag 0, method 0, language tag "" NUL, translated keyword "" NUL.
  const data = new Uint8Array(key.length + 5 + value.length);
  data.set(key, 0);
  data.set(value, key.length + 5);
  return encodePngChunk("iTXt", data);
}

function inflateText(bytes: Uint8Array): Uint8Array | undefined {
  try {
    return unzlibSync(bytes);
  } catch {
    return undefined;
  }
}

/** Keyword and text of one text chunk, or undefined when it is malformed. */
function readTextChunk(type: string, data: Uint8Array): [string, string] | undefined {
  const keyEnd = data.indexOf(0);
  if (keyEnd < 1) return undefined;
  const keyword = latin1String(data.subarray(0, keyEnd));
  if (type === "tEXt") return [keyword, latin1String(data.subarray(keyEnd + 1))];
  if (type === "zTXt") {
    const text = data[keyEnd + 1] === 0 ? inflateText(data.subarray(keyEnd + 2)) : undefined;
    return text && [keyword, latin1String(text)];
  }
  // iTXt: compression flag and method, language tag, translated keyword, then the text.
  const compressed = data[keyEnd + 1];
  const languageEnd = data.indexOf(0, keyEnd + 3);
  const translatedEnd = languageEnd < 0 ? -1 : data.indexOf(0, languageEnd + 1);
  if (translatedEnd < 0 || compressed > 1 || (compressed === 1 && data[keyEnd + 2] !== 0)) {
    return undefined;
  }
  const body = data.subarray(translatedEnd + 1);
  const text = compressed ? inflateText(body) : body;
  return text && [keyword, utf8Decoder.decode(text)];
}

/**
 * Collects tEXt, zTXt and iTXt entries; a later chunk with the same keyword wins, as in
 * Pillow's `info`. Malformed text chunks are skipped: text is auxiliary, and the image stays
 * usable without it.
 */
export function readTextChunks(chunks: readonly PngChunk[]): Record<string, string> {
  const text: Record<string, string> = {};
  for (const { type, data } of chunks) {
    if (type !== "tEXt" && type !== "zTXt" && type !== "iTXt") continue;
    const entry = readTextChunk(type, data);
    if (entry) text[entry[0]] = entry[1];
  }
  return text;
}
