import { deflateSync, inflateSync } from "node:zlib";
import { encode as fastPngEncode } from "fast-png";
import { describe, expect, it } from "vitest";
import { decodePng, encodePng, hasPngSignature } from "../../src/image/png.js";
import {
  crc32,
  encodePngChunk,
  encodeTextChunk,
  PNG_SIGNATURE,
  readPngChunks,
} from "../../src/image/png-chunks.js";
import { buildPng, byteRamp, concat, REFERENCE } from "./helpers.js";

function expectOneLineError(run: () => unknown, pattern: RegExp): void {
  let message = "";
  try {
    run();
  } catch (error) {
    message = (error as Error).message;
  }
  expect(message).toMatch(pattern);
  expect(message).not.toContain("\n");
}

describe("crc32", () => {
  it("matches the standard check value", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });
});

describe("encodePng / decodePng round trip", () => {
  for (const channels of [1, 2, 3, 4]) {
    it(`keeps ${channels}-channel pixels exactly`, () => {
      const data = byteRamp(7 * 5 * channels);
      const png = encodePng({ width: 7, height: 5, data });
      expect(hasPngSignature(png)).toBe(true);
      const decoded = decodePng(png, "test.png");
      expect(decoded).toMatchObject({ width: 7, height: 5, channels });
      expect(Array.from(decoded.data)).toEqual(Array.from(data));
      expect(decoded.text).toEqual({});
    });
  }

  it("filters rows, so smooth images compress well", () => {
    const width = 48;
    const height = 32;
    const data = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) data.set([x * 5, y * 7, (x + y) * 3], (y * width + x) * 3);
    }
    const png = encodePng({ width, height, data });
    const idat = readPngChunks(png, "x").find((chunk) => chunk.type === "IDAT")!;
    const raw = inflateSync(idat.data);
    const filters = new Set(Array.from({ length: height }, (_, y) => raw[y * (width * 3 + 1)]));
    expect(filters.has(0) && filters.size === 1).toBe(false);
    expect(Array.from(decodePng(png, "x").data)).toEqual(Array.from(data));
  });

  it("accepts Uint8ClampedArray pixels and every compression level", () => {
    const data = new Uint8ClampedArray(byteRamp(4 * 3 * 3));
    for (const level of [0, 9]) {
      const decoded = decodePng(
        encodePng({ width: 4, height: 3, data }, { compressionLevel: level }),
        "x",
      );
      expect(Array.from(decoded.data)).toEqual(Array.from(data));
    }
  });

  it("writes Latin-1 text as tEXt and other text as iTXt, before the image data", () => {
    const text = { parameters: "a cat, ünïcode-free\nSteps: 20", Comment: "雪の中の猫 🐈" };
    const itxt = { "todo-sd": '{"prompt":"café"}' };
    const png = encodePng({ width: 2, height: 2, data: byteRamp(12) }, { text, itxt });
    const types = readPngChunks(png, "x").map((chunk) => chunk.type);
    expect(types).toEqual(["IHDR", "tEXt", "iTXt", "iTXt", "IDAT", "IEND"]);
    expect(decodePng(png, "x").text).toEqual({ ...text, ...itxt });
  });

  it("reads Pillow's tEXt and iTXt chunks and pixels", () => {
    const bytes = Uint8Array.from(atob(REFERENCE.pillowPng), (c) => c.charCodeAt(0));
    const decoded = decodePng(bytes, "pillow.png");
    expect(decoded).toMatchObject({ width: 3, height: 2, channels: 3 });
    expect(Array.from(decoded.data)).toEqual(REFERENCE.pillowPngPixels);
    expect(decoded.text["prompt-ja"]).toBe("猫の写真");
    expect(decoded.text["parameters"]).toContain("Sampler: Euler a");
  });

  it("round-trips Latin-1 bytes 0x80-0xff in tEXt unchanged", () => {
    const value = String.fromCharCode(...Array.from({ length: 128 }, (_, i) => 128 + i));
    const png = encodePng({ width: 1, height: 1, data: byteRamp(3) }, { text: { k: value } });
    expect(readPngChunks(png, "x")[1].type).toBe("tEXt");
    expect(decodePng(png, "x").text["k"]).toBe(value);
  });
});

describe("decodePng formats", () => {
  it("undoes all five filter types for RGB, RGBA, gray and gray + alpha", () => {
    for (const [colorType, channels] of [
      [2, 3],
      [6, 4],
      [0, 1],
      [4, 2],
    ]) {
      const width = 6;
      const rows = Array.from({ length: 10 }, (_, y) => byteRamp(width * channels, 29 + y * 13));
      const png = buildPng({ width, height: 10, bitDepth: 8, colorType, rows });
      const decoded = decodePng(png, "filters.png");
      expect(decoded.channels).toBe(channels);
      expect(Array.from(decoded.data)).toEqual(Array.from(concat(rows)));
    }
  });

  it("keeps the high byte of 16-bit samples", () => {
    const width = 3;
    const samples = Array.from({ length: 2 * width * 3 }, (_, i) => (i * 9973) & 0xffff);
    const rows = [0, 1].map((y) => {
      const row = new Uint8Array(width * 6);
      for (let i = 0; i < width * 3; i++) {
        row[2 * i] = samples[y * width * 3 + i] >> 8;
        row[2 * i + 1] = samples[y * width * 3 + i] & 0xff;
      }
      return row;
    });
    const decoded = decodePng(
      buildPng({ width, height: 2, bitDepth: 16, colorType: 2, rows }),
      "x",
    );
    expect(decoded.channels).toBe(3);
    expect(Array.from(decoded.data)).toEqual(samples.map((v) => v >> 8));
  });

  it("scales 1, 2 and 4-bit gray to 0-255", () => {
    // Width 5 leaves padding bits at the end of each row.
    const values = [
      [0, 1, 0, 1, 1],
      [1, 0, 1, 1, 0],
    ];
    for (const depth of [1, 2, 4]) {
      const max = (1 << depth) - 1;
      const rows = values.map((row) => {
        const bytes = new Uint8Array(Math.ceil((5 * depth) / 8));
        row.forEach((bit, x) => {
          const value = bit ? max : max >> 1;
          bytes[(x * depth) >> 3] |= value << (8 - depth - ((x * depth) & 7));
        });
        return bytes;
      });
      const decoded = decodePng(
        buildPng({ width: 5, height: 2, bitDepth: depth, colorType: 0, rows }),
        "x",
      );
      const expected = values
        .flat()
        .map((bit) => (bit ? 255 : Math.round(((max >> 1) * 255) / max)));
      expect(decoded.channels).toBe(1);
      expect(Array.from(decoded.data)).toEqual(expected);
    }
  });

  it("expands palettes to RGB, and to RGBA with tRNS", () => {
    const palette = [
      [255, 0, 0],
      [0, 255, 0],
      [0, 0, 255],
      [10, 20, 30],
    ];
    const indices = [0, 1, 2, 3, 3, 2, 1];
    for (const depth of [2, 4, 8]) {
      const bytes = new Uint8Array(Math.ceil((indices.length * depth) / 8));
      indices.forEach((index, x) => {
        bytes[(x * depth) >> 3] |= index << (8 - depth - ((x * depth) & 7));
      });
      const rows = [bytes];
      const rgb = decodePng(
        buildPng({ width: 7, height: 1, bitDepth: depth, colorType: 3, rows, palette }),
        "p",
      );
      expect(rgb.channels).toBe(3);
      expect(Array.from(rgb.data)).toEqual(indices.flatMap((i) => palette[i]));
      const rgba = decodePng(
        buildPng({
          width: 7,
          height: 1,
          bitDepth: depth,
          colorType: 3,
          rows,
          palette,
          transparency: [0, 128],
        }),
        "p",
      );
      expect(rgba.channels).toBe(4);
      const alpha = [0, 128, 255, 255];
      expect(Array.from(rgba.data)).toEqual(indices.flatMap((i) => [...palette[i], alpha[i]]));
    }
  });

  it("decodes Adam7-interlaced images", () => {
    const data = byteRamp(11 * 9 * 3);
    const png = fastPngEncode(
      { width: 11, height: 9, data, channels: 3, depth: 8 },
      { interlace: "Adam7" },
    );
    expect(png[8 + 8 + 12]).toBe(1);
    expect(Array.from(decodePng(png, "x").data)).toEqual(Array.from(data));
  });
});

describe("decodePng bad input", () => {
  const good = encodePng({ width: 4, height: 4, data: byteRamp(48) }, { text: { a: "b" } });

  it("names the file and says it is not a PNG", () => {
    expectOneLineError(
      () => decodePng(new Uint8Array(0), "empty.png"),
      /^empty\.png: the file is empty/,
    );
    expectOneLineError(
      () => decodePng(Uint8Array.of(0xff, 0xd8, 0xff, 0xe0, 0, 16), "photo.jpg"),
      /^photo\.jpg: this is a JPEG image, not PNG; convert it to PNG$/,
    );
    expectOneLineError(
      () => decodePng(new TextEncoder().encode("hello, world"), "notes.txt"),
      /^notes\.txt: not a PNG image \(the file does not start with the PNG signature\)$/,
    );
  });

  it("reports truncation wherever the file ends", () => {
    const chunks = readPngChunks(good, "x");
    const idat = chunks.find((chunk) => chunk.type === "IDAT")!;
    for (const end of [5, 8, 20, 33, idat.offset + 10, good.length - 12, good.length - 1]) {
      expectOneLineError(
        () => decodePng(good.subarray(0, end), "cut.png"),
        /^cut\.png: truncated PNG/,
      );
    }
  });

  it("reports a checksum mismatch", () => {
    const damaged = good.slice();
    const idat = readPngChunks(good, "x").find((chunk) => chunk.type === "IDAT")!;
    damaged[idat.offset + 9] ^= 0xff;
    expectOneLineError(
      () => decodePng(damaged, "bad.png"),
      /^bad\.png: corrupt PNG \(checksum mismatch in the IDAT chunk at byte \d+\)$/,
    );
  });

  it("reports damaged image data even when the checksums are right", () => {
    const header = readPngChunks(good, "x")[0];
    const png = concat([
      PNG_SIGNATURE,
      encodePngChunk("IHDR", header.data),
      encodePngChunk("IDAT", Uint8Array.of(0x78, 0x9c, 1, 2, 3, 4, 5)),
      encodePngChunk("IEND", new Uint8Array(0)),
    ]);
    expectOneLineError(
      () => decodePng(png, "z.png"),
      /^z\.png: cannot decode the PNG image data \(/,
    );
  });

  it("rejects invalid headers and missing chunks", () => {
    const header = (depth: number, colorType: number) => {
      const data = new Uint8Array(13);
      new DataView(data.buffer).setUint32(0, 2);
      new DataView(data.buffer).setUint32(4, 2);
      data[8] = depth;
      data[9] = colorType;
      return encodePngChunk("IHDR", data);
    };
    const idat = encodePngChunk("IDAT", Uint8Array.of(0x78, 0x9c, 3, 0, 0, 0, 0, 1));
    const iend = encodePngChunk("IEND", new Uint8Array(0));
    expectOneLineError(
      () => decodePng(concat([PNG_SIGNATURE, header(4, 2), idat, iend]), "h.png"),
      /^h\.png: invalid PNG \(bit depth 4 is not allowed with color type 2\)$/,
    );
    expectOneLineError(
      () => decodePng(concat([PNG_SIGNATURE, header(8, 5), idat, iend]), "h.png"),
      /unknown color type 5/,
    );
    expectOneLineError(
      () => decodePng(concat([PNG_SIGNATURE, header(8, 2), iend]), "h.png"),
      /^h\.png: invalid PNG \(no image data\)$/,
    );
    expectOneLineError(
      () => decodePng(concat([PNG_SIGNATURE, header(8, 3), idat, iend]), "h.png"),
      /palette image without a PLTE chunk/,
    );
    expectOneLineError(
      () => decodePng(concat([PNG_SIGNATURE, idat, header(8, 2), iend]), "h.png"),
      /first chunk is IDAT, expected IHDR/,
    );
  });

  it("reads compressed text (zTXt, compressed iTXt)", () => {
    const bytes = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
    const ztxt = concat([bytes("z\0\0"), deflateSync(bytes("caf\xe9"))]);
    const itxt = concat([bytes("i\0\x01\0en\0\0"), deflateSync(new TextEncoder().encode("猫"))]);
    const png = buildPng({
      width: 1,
      height: 1,
      bitDepth: 8,
      colorType: 2,
      rows: [byteRamp(3)],
      extraChunks: [encodePngChunk("zTXt", ztxt), encodePngChunk("iTXt", itxt)],
    });
    expect(decodePng(png, "t.png").text).toEqual({ z: "café", i: "猫" });
  });

  it("skips malformed text chunks instead of failing", () => {
    const bytes = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));
    const png = buildPng({
      width: 1,
      height: 1,
      bitDepth: 8,
      colorType: 2,
      rows: [byteRamp(3)],
      extraChunks: [
        encodePngChunk("iTXt", bytes("k\0\x01\0\0\0not zlib")),
        encodePngChunk("zTXt", bytes("z\0\0not zlib")),
        encodePngChunk("iTXt", bytes("short\0\0\0")),
        encodePngChunk("tEXt", bytes("novalue")),
        encodeTextChunk("ok", "yes"),
      ],
    });
    expect(decodePng(png, "t.png").text).toEqual({ ok: "yes" });
  });
});

describe("encodePng bad input", () => {
  it("rejects pixel data of the wrong size", () => {
    expectOneLineError(
      () => encodePng({ width: 4, height: 4, data: new Uint8Array(47) }),
      /^cannot encode PNG: 47 bytes do not make a 4x4 image with 1 to 4 channels$/,
    );
    expectOneLineError(
      () => encodePng({ width: 0, height: 4, data: new Uint8Array(0) }),
      /invalid size 0x4/,
    );
  });

  it("rejects invalid keywords and NUL characters in text", () => {
    const image = { width: 1, height: 1, data: byteRamp(3) };
    for (const keyword of ["", "x".repeat(80), " lead", "two  spaces", "猫"]) {
      expectOneLineError(
        () => encodePng(image, { text: { [keyword]: "v" } }),
        /PNG text keyword .* is invalid/,
      );
    }
    expectOneLineError(() => encodePng(image, { itxt: { k: "a\0b" } }), /contains a NUL character/);
    expectOneLineError(() => encodePng(image, { compressionLevel: 10 }), /compression level/);
  });
});
