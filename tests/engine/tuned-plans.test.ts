// Which MatMul, Conv and MultiHeadAttention shapes the executor hands to the tuned src/gpu
// kernels, and why it keeps the others on its portable kernels; the host re-layout of Conv
// weights. Pure functions: no GPU.

import { describe, expect, it } from "vitest";
import {
  decodeTensorProto,
  type HostTensor,
  uploadElements,
} from "../../src/engine/host-tensor.js";
import {
  attentionPlan,
  type ConvAttributes,
  convPlan,
  convWeightSourceStrides,
  gemmPlan,
  layerNormPlan,
} from "../../src/engine/tuned-plans.js";
import type { GpuCapabilities } from "../../src/gpu/types.js";
import type { KernelVariant } from "../../src/gpu/variants.js";

const F32: KernelVariant = { path: "portable", storage: "f32" };
const LIMITS: GpuCapabilities["limits"] = {
  maxStorageBufferBindingSize: 2 ** 27,
  maxBufferSize: 2 ** 28,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupsPerDimension: 65535,
};
const SAME3: ConvAttributes = {
  group: 1,
  autoPad: "NOTSET",
  strides: [1, 1],
  dilations: [1, 1],
  pads: [1, 1, 1, 1],
};

describe("gemmPlan", () => {
  it("folds a's leading dims into M against a shared 2-D (or batch-1) weight", () => {
    expect(gemmPlan([2, 4096, 320], [320, 1280], F32, LIMITS)).toEqual({
      kind: "tuned",
      shape: { batch: 1, m: 8192, n: 1280, k: 320, sharedB: true },
    });
    expect(gemmPlan([3, 5, 7], [1, 7, 2], F32, LIMITS)).toMatchObject({
      shape: { batch: 1, m: 15, sharedB: true },
    });
  });

  it("makes a batch of GEMMs from equal batch dims, padding the shorter rank with 1s", () => {
    expect(gemmPlan([2, 8, 64, 40], [2, 8, 40, 77], F32, LIMITS)).toEqual({
      kind: "tuned",
      shape: { batch: 16, m: 64, n: 77, k: 40, sharedB: false },
    });
    expect(gemmPlan([1, 6, 5, 4], [6, 4, 3], F32, LIMITS)).toMatchObject({
      shape: { batch: 6, sharedB: false },
    });
  });

  it("refuses broadcast batch dims, 1-D and empty operands, and grids past the adapter", () => {
    expect(gemmPlan([5, 4], [2, 4, 6], F32, LIMITS)).toEqual({
      kind: "portable",
      reason: "batch dims [] and [2] broadcast",
    });
    expect(gemmPlan([2, 1, 5, 4], [2, 3, 4, 6], F32, LIMITS).kind).toBe("portable");
    expect(gemmPlan([4], [4, 6], F32, LIMITS)).toEqual({
      kind: "portable",
      reason: "a 1-D operand",
    });
    expect(gemmPlan([0, 4], [4, 6], F32, LIMITS).kind).toBe("portable");
    // 64-row tiles: 65536 * 64 rows need 65536 workgroups along y.
    expect(gemmPlan([65536 * 64, 4], [4, 4], F32, LIMITS)).toEqual({
      kind: "portable",
      reason: "more workgroups than the adapter dispatches per dimension",
    });
  });
});

describe("convPlan", () => {
  it("takes 3x3 with padding 1 and 1x1 without, at stride 1 or 2", () => {
    expect(convPlan([2, 4, 16, 12], [8, 4, 3, 3], SAME3, F32, LIMITS)).toEqual({
      kind: "tuned",
      shape: {
        shape: {
          batch: 2,
          height: 16,
          width: 12,
          inChannels: 4,
          outChannels: 8,
          kernel: 3,
          stride: 1,
          padding: 1,
        },
      },
    });
    expect(
      convPlan([1, 4, 16, 16], [4, 4, 3, 3], { ...SAME3, strides: [2, 2] }, F32, LIMITS),
    ).toMatchObject({ shape: { shape: { stride: 2, padding: 1 } } });
    expect(
      convPlan([1, 4, 8, 8], [6, 4, 1, 1], { ...SAME3, pads: [0, 0, 0, 0] }, F32, LIMITS),
    ).toMatchObject({ shape: { shape: { kernel: 1, padding: 0 } } });
  });

  it("writes other padding into the input: the VAE encoder's bottom-right padded downsampling", () => {
    expect(
      convPlan(
        [1, 4, 16, 16],
        [4, 4, 3, 3],
        { ...SAME3, strides: [2, 2], pads: [0, 0, 1, 1] },
        F32,
        LIMITS,
      ),
    ).toEqual({
      kind: "tuned",
      shape: {
        shape: {
          batch: 1,
          height: 17,
          width: 17,
          inChannels: 4,
          outChannels: 4,
          kernel: 3,
          stride: 2,
          padding: 0,
        },
        inputPads: [0, 0, 1, 1],
      },
    });
  });

  it("says why it keeps the other convolutions portable", () => {
    const reason = (x: number[], w: number[], a: Partial<ConvAttributes>) => {
      const plan = convPlan(x, w, { ...SAME3, ...a }, F32, LIMITS);
      return plan.kind === "portable" ? plan.reason : "tuned";
    };
    const x = [1, 4, 8, 8];
    expect(reason(x, [4, 4, 3, 3], { pads: [0, 3, 0, 0] })).toBe(
      "pads [0, 3, 0, 0] with a 3x3 kernel",
    );
    expect(reason([1, 4, 1, 1], [4, 4, 3, 3], { pads: [0, 0, 1, 1] })).toBe(
      "a 1x1 map smaller than the kernel",
    );
    expect(reason(x, [4, 4, 5, 5], { pads: [2, 2, 2, 2] })).toBe("a 5x5 kernel");
    expect(reason(x, [4, 4, 3, 1], {})).toBe("a 3x1 kernel");
    expect(reason(x, [4, 4, 3, 3], { dilations: [2, 2] })).toBe("a dilated convolution");
    expect(reason(x, [4, 4, 3, 3], { strides: [3, 3] })).toBe("strides [3, 3]");
    expect(reason(x, [4, 4, 3, 3], { strides: [1, 2] })).toBe("strides [1, 2]");
    expect(reason(x, [4, 2, 3, 3], { group: 2 })).toBe("a grouped convolution");
    expect(reason(x, [4, 4, 3, 3], { autoPad: "SAME_UPPER" })).toBe("auto_pad SAME_UPPER");
    expect(reason([1, 4, 8], [4, 4, 3], {})).toBe("a rank-3 convolution");
    expect(reason(x, [4, 4, 1, 1], {})).toBe("pads [1, 1, 1, 1] with a 1x1 kernel");
    expect(reason(x, [4, 4, 3, 3], { pads: [1, 1, -1, 1] })).toBe(
      "pads [1, 1, -1, 1] with a 3x3 kernel",
    );
  });
});

describe("convWeightSourceStrides", () => {
  it("reads element (y, x, c, o) of the kernel's (KH, KW, C, O) from ONNX's (O, C, KH, KW)", () => {
    const [o, c, kh, kw] = [3, 2, 3, 2];
    const strides = convWeightSourceStrides([o, c, kh, kw]);
    for (let oi = 0; oi < o; oi++)
      for (let ci = 0; ci < c; ci++)
        for (let y = 0; y < kh; y++)
          for (let x = 0; x < kw; x++)
            expect(y * strides[0] + x * strides[1] + ci * strides[2] + oi * strides[3]).toBe(
              ((oi * c + ci) * kh + y) * kw + x,
            );
  });

  it("leaves a float16 initializer's bits as they are when decoding, for the upload", () => {
    // 1, -2, 0.5, 65504 as float16 bits.
    const bits = Uint16Array.from([0x3c00, 0xc000, 0x3800, 0x7bff]);
    const tensor = decodeTensorProto({
      name: "w",
      dims: [2, 1, 1, 2],
      dataType: 10,
      rawData: new Uint8Array(bits.buffer),
    });
    expect(Array.from(tensor.data)).toEqual([1, -2, 0.5, 65504]);
    expect(Array.from(tensor.float16Bits ?? [])).toEqual(Array.from(bits));
    expect(
      decodeTensorProto({ name: "f", dims: [1], dataType: 1, rawData: new Uint8Array(4) }),
    ).not.toHaveProperty("float16Bits");
  });

  it("uploads a float16 initializer's bits in f16 storage without widening its values", () => {
    const bits = Uint16Array.from([0x3c00, 0xc000]);
    const unread: HostTensor = {
      kind: "host",
      dtype: "float32",
      dims: [2],
      float16Bits: bits,
      get data(): Float32Array {
        throw new Error("widened");
      },
    };
    expect(uploadElements(unread, "f16")).toBe(bits);
    // f32 storage needs the values; float32 values in f16 storage are narrowed.
    expect(() => uploadElements(unread, "f32")).toThrow("widened");
    const values: HostTensor = {
      kind: "host",
      dtype: "float32",
      dims: [2],
      data: Float32Array.from([1, -2]),
    };
    expect(Array.from(uploadElements(values, "f16"))).toEqual([0x3c00, 0xc000]);
    expect(uploadElements(values, "f32")).toBe(values.data);
  });
});

describe("layerNormPlan", () => {
  const ln = { x: [2, 77, 768], axis: 2, scale: [768], bias: [768], epsilon: 1e-5 };

  it("takes the last axis with scale and bias of its length", () => {
    expect(layerNormPlan({ ...ln, statistics: false }, LIMITS)).toEqual({
      kind: "tuned",
      shape: { rows: 154, channels: 768, eps: 1e-5 },
    });
  });

  it("says why it keeps the others portable", () => {
    const reason = (o: Partial<Parameters<typeof layerNormPlan>[0]>) => {
      const plan = layerNormPlan({ ...ln, statistics: false, ...o }, LIMITS);
      return plan.kind === "portable" ? plan.reason : "tuned";
    };
    expect(reason({ statistics: true })).toBe("its statistics outputs");
    expect(reason({ axis: 1 })).toBe("normalisation over more than the last axis");
    expect(reason({ bias: undefined })).toBe("no bias");
    expect(reason({ scale: [1] })).toBe("scale or bias not of the 768 channels");
    expect(reason({ epsilon: 0 })).toBe("epsilon 0");
  });
});

describe("attentionPlan", () => {
  const operands = { q: [2, 64, 320], k: [2, 16, 320], v: [2, 16, 320], heads: 8 };

  it("takes the builders' form: no extra inputs, the default scale, heads of a multiple of 4", () => {
    expect(
      attentionPlan({ ...operands, scale: 1 / Math.sqrt(40), extraInputs: false }, F32, LIMITS),
    ).toEqual({
      kind: "tuned",
      shape: { batch: 2, queries: 64, heads: 8, headDim: 40, kvTokens: 16 },
    });
    expect(attentionPlan({ ...operands, extraInputs: false }, F32, LIMITS).kind).toBe("tuned");
  });

  it("says why it keeps the other attentions portable", () => {
    const reason = (o: Partial<Parameters<typeof attentionPlan>[0]>) => {
      const plan = attentionPlan({ ...operands, extraInputs: false, ...o }, F32, LIMITS);
      return plan.kind === "portable" ? plan.reason : "tuned";
    };
    expect(reason({ extraInputs: true })).toBe("a bias, mask or past state");
    expect(reason({ scale: 0.5 })).toBe("scale 0.5 (the kernel applies 1/sqrt(40))");
    expect(reason({ heads: 160 })).toBe("head dim 2 (not a multiple of 4)");
    expect(reason({ heads: 3 })).toBe("320 channels in 3 heads");
    expect(reason({ v: [2, 16, 640] })).toBe("K or V of another width than Q");
    expect(reason({ k: [2, 17, 320] })).toBe(
      "batch or token counts that differ between Q, K and V",
    );
    expect(reason({ q: [2, 64, 8, 40] })).toBe("packed or 4-D inputs");
    // Two tiles of 16 keys x d floats each must fit 16 KiB of workgroup memory: d <= 128.
    expect(reason({ q: [1, 4, 160], k: [1, 4, 160], v: [1, 4, 160], heads: 1 })).toBe(
      "head dim 160 outgrows workgroup memory",
    );
  });
});
