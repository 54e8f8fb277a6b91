import { describe, expect, it } from "vitest";
import { BYTE_TO_CHAR, symbolsToText } from "../../src/tokenizers/byte-level.js";

describe("byte-level table", () => {
  it("maps the 256 bytes to 256 distinct printable characters", () => {
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
    expect(BYTE_TO_CHAR[0x21]).toBe("!");
    expect(BYTE_TO_CHAR[0xff]).toBe("ÿ");
    // Bytes that are not printable take U+0100 onward in byte order: 0x00 first, space 33rd.
    expect(BYTE_TO_CHAR[0x00]).toBe("\u0100");
    expect(BYTE_TO_CHAR[0x20]).toBe("Ġ");
    expect(BYTE_TO_CHAR[0xad]).toBe("Ń");
  });

  it("turns table characters back into text, replacing invalid UTF-8", () => {
    const symbols = Array.from(new TextEncoder().encode("café 🐱"), (b) => BYTE_TO_CHAR[b]);
    expect(symbolsToText(symbols.join(""))).toBe("café 🐱");
    expect(symbolsToText(BYTE_TO_CHAR[0xc3])).toBe("\ufffd");
  });
});
