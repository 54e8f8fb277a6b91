import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { encodeSafetensors, SafetensorsFile } from "../../src/weights/safetensors.js";
import { fixturePath } from "../fixtures.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-st-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function withHeader(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.byteLength + data.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  out.set(json, 8);
  out.set(data, 8 + json.byteLength);
  return out;
}

describe("safetensors", () => {
  it("round-trips every dtype family", () => {
    const bytes = encodeSafetensors(
      {
        f32: { dtype: "F32", shape: [2, 2], data: Float32Array.from([1, -2, 3.5, 0]) },
        f16: { dtype: "F16", shape: [2], data: Uint16Array.from([0x3c00, 0xc000]) },
        bf16: { dtype: "BF16", shape: [1], data: Uint16Array.from([0x3fc0]) },
        f64: { dtype: "F64", shape: [1], data: Float64Array.from([0.1]) },
        i64: { dtype: "I64", shape: [2], data: BigInt64Array.from([-5n, 7n]) },
        u8: { dtype: "U8", shape: [3], data: Uint8Array.from([1, 2, 255]) },
        i32: { dtype: "I32", shape: [1], data: Int32Array.from([-3]) },
      },
      { format: "pt" },
    );
    const file = SafetensorsFile.fromBytes(bytes, "rt.safetensors");
    expect(file.metadata).toEqual({ format: "pt" });
    expect(file.keys()).toEqual(["f32", "f16", "bf16", "f64", "i64", "u8", "i32"]);
    expect([...file.readFloat32("f32")]).toEqual([1, -2, 3.5, 0]);
    expect(file.info("f32").shape).toEqual([2, 2]);
    expect([...file.readFloat32("f16")]).toEqual([1, -2]);
    expect([...file.readFloat32("bf16")]).toEqual([1.5]);
    expect(file.readFloat64("f64")[0]).toBe(0.1);
    expect([...file.readBigInt64("i64")]).toEqual([-5n, 7n]);
    expect([...file.readBigInt64("u8")]).toEqual([1n, 2n, 255n]);
    expect([...file.readBigInt64("i32")]).toEqual([-3n]);
    expect(() => file.readFloat32("i64")).toThrow(
      /rt\.safetensors: tensor "i64" has dtype I64, expected a float type/,
    );
    expect(() => file.readFloat32("missing")).toThrow(/rt\.safetensors: no tensor named "missing"/);
  });

  it("reads every integer width as bigint, wrapping U64 into int64, and refuses floats", () => {
    const bytes = encodeSafetensors({
      u64: { dtype: "U64", shape: [2], data: BigUint64Array.from([2n ** 64n - 1n, 9n]) },
      u32: { dtype: "U32", shape: [1], data: Uint32Array.from([2 ** 32 - 1]) },
      i16: { dtype: "I16", shape: [1], data: Int16Array.from([-300]) },
      u16: { dtype: "U16", shape: [1], data: Uint16Array.from([65535]) },
      i8: { dtype: "I8", shape: [2], data: Int8Array.from([-128, 5]) },
      bool: { dtype: "BOOL", shape: [2], data: Uint8Array.from([1, 0]) },
      f32: { dtype: "F32", shape: [1], data: Float32Array.from([1]) },
    });
    const file = SafetensorsFile.fromBytes(bytes, "ints.safetensors");
    expect([...file.readBigInt64("u64")]).toEqual([-1n, 9n]);
    expect([...file.readBigInt64("u32")]).toEqual([4294967295n]);
    expect([...file.readBigInt64("i16")]).toEqual([-300n]);
    expect([...file.readBigInt64("u16")]).toEqual([65535n]);
    expect([...file.readBigInt64("i8")]).toEqual([-128n, 5n]);
    expect([...file.readBigInt64("bool")]).toEqual([1n, 0n]);
    expect(() => file.readBigInt64("f32")).toThrow(
      /ints\.safetensors: tensor "f32" has dtype F32, expected an integer type/,
    );
  });

  it("reads fixture weights lazily by name", () => {
    const file = SafetensorsFile.open(
      fixturePath("pipelines", "sd15-tiny", "unet", "diffusion_pytorch_model.safetensors"),
    );
    try {
      expect(file.info("conv_in.weight")).toMatchObject({ dtype: "F16", shape: [16, 4, 3, 3] });
      const w = file.readFloat32("conv_in.weight");
      expect(w.length).toBe(16 * 4 * 9);
      expect(w.every(Number.isFinite)).toBe(true);
    } finally {
      file.close();
    }
  });

  it.each([
    ["a file shorter than the length prefix", Uint8Array.from([1, 2, 3]), /too short/],
    [
      "a header length past the end",
      (() => {
        const b = new Uint8Array(16);
        new DataView(b.buffer).setBigUint64(0, 1000n, true);
        return b;
      })(),
      /runs past the end/,
    ],
    [
      "a header that is not JSON",
      (() => {
        const b = withHeader({});
        b.set(new TextEncoder().encode("{x"), 8);
        return b;
      })(),
      /header is not JSON/,
    ],
    [
      "an unknown dtype",
      withHeader({ t: { dtype: "F8_E9", shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)),
      /unknown dtype "F8_E9"/,
    ],
    [
      "a size that does not match the shape",
      withHeader({ t: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /needs 8/,
    ],
    [
      "truncated data",
      withHeader({ t: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)),
      /past its end at 8 \(truncated file\?\)/,
    ],
    [
      "overlapping tensors",
      withHeader(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        new Uint8Array(12),
      ),
      /overlap/,
    ],
    [
      "a negative shape",
      withHeader({ t: { dtype: "F32", shape: [-1], data_offsets: [0, 0] } }),
      /invalid shape/,
    ],
  ])("rejects %s, naming the file", (_label, bytes, message) => {
    const path = join(work, "bad.safetensors");
    writeFileSync(path, bytes);
    expect(() => SafetensorsFile.open(path)).toThrow(
      /bad\.safetensors: not a valid safetensors file/,
    );
    expect(() => SafetensorsFile.open(path)).toThrow(message);
  });

  it("identifies files by content metadata for caches", () => {
    const path = join(work, "id.safetensors");
    writeFileSync(
      path,
      encodeSafetensors({ a: { dtype: "F32", shape: [1], data: Float32Array.from([1]) } }),
    );
    const first = SafetensorsFile.open(path);
    const before = first.identity() as { size: number; head: string };
    first.close();
    writeFileSync(
      path,
      encodeSafetensors({ b: { dtype: "F32", shape: [1], data: Float32Array.from([1]) } }),
    );
    const second = SafetensorsFile.open(path);
    const after = second.identity() as { size: number; head: string };
    second.close();
    expect(after.size).toBe(before.size);
    expect(after.head).not.toBe(before.head);
  });

  it("names a missing file", () => {
    expect(() => SafetensorsFile.open(join(work, "absent.safetensors"))).toThrow(
      /absent\.safetensors: cannot open \(ENOENT\)/,
    );
  });
});
