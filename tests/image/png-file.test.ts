import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { encodePng } from "../../src/image/png.js";
import { readPngFile, writePngFile } from "../../src/image/png-file.js";

const folder = mkdtempSync(join(tmpdir(), "todo-sd-image-"));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe("PNG files", () => {
  it("writes and reads back, leaving no temporary file", () => {
    const path = join(folder, "out.png");
    const data = Uint8Array.from({ length: 12 }, (_, i) => i * 20);
    writePngFile(path, encodePng({ width: 2, height: 2, data }, { text: { a: "b" } }));
    expect(readdirSync(folder)).toEqual(["out.png"]);
    const image = readPngFile(path);
    expect(Array.from(image.data)).toEqual(Array.from(data));
    expect(image.text).toEqual({ a: "b" });
  });

  it("names the file in one-line errors", () => {
    const missing = join(folder, "missing.png");
    expect(() => readPngFile(missing)).toThrow(`${missing}: no such file`);
    expect(() => readPngFile(folder)).toThrow(`${folder}: is a folder, not a PNG file`);
    const text = join(folder, "notes.png");
    writeFileSync(text, "not an image");
    expect(() => readPngFile(text)).toThrow(`${text}: not a PNG image`);
    rmSync(text);
  });

  it("leaves nothing behind when writing fails", () => {
    const path = join(folder, "no-such-folder", "out.png");
    expect(() => writePngFile(path, new Uint8Array(1))).toThrow(
      new RegExp(`^${path}: cannot write`),
    );
    expect(readdirSync(folder)).toEqual(["out.png"]);
  });
});
