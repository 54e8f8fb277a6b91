/**
 * The byte-to-character table of byte-level BPE (GPT-2, Radford et al. 2019, as reused by
 * CLIP): every UTF-8 byte becomes one printable character, so BPE runs on strings that can
 * hold any text without an unknown symbol. Printable Latin-1 bytes map to themselves; the
 * other 68 bytes (controls, space, soft hyphen...) take the code points from U+0100 upward,
 * in byte order. The vocabulary is written in these characters (`Ġ` is the space byte).
 */

function buildByteToChar(): string[] {
  const table: string[] = new Array(256);
  const keepsItself = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let next = 0x100;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(keepsItself(b) ? b : next++);
  }
  return table;
}

/** `BYTE_TO_CHAR[b]` is the one-character string that stands for byte `b`. */
export const BYTE_TO_CHAR: readonly string[] = Object.freeze(buildByteToChar());

const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

const utf8 = new TextEncoder();

/**
 * Back from table characters to text. Characters outside the table (special tokens such as
 * `<|endoftext|>` are written in plain ASCII, which the table also covers) are kept as their
 * UTF-8 bytes; invalid UTF-8 becomes U+FFFD, as the reference decodes with errors="replace".
 */
export function symbolsToText(symbols: string): string {
  const bytes: number[] = [];
  for (const ch of symbols) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b !== undefined) bytes.push(b);
    else for (const x of utf8.encode(ch)) bytes.push(x);
  }
  return new TextDecoder("utf-8", { fatal: false }).decode(new Uint8Array(bytes));
}
