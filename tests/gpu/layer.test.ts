// The WebGPU layer's pure parts: the variant table, buffer sizing, tiling checks, the float64
// references and the comparison that the kernel checks rest on.
import { describe, expect, it } from "vitest";
import { BufferPool, checkBufferSize, sizeClass } from "../../src/gpu/buffer-pool.js";
import { compareWithReference, randomValues } from "../../src/gpu/check.js";
import type { GpuContext } from "../../src/gpu/context.js";
import {
  DEFAULT_ATTENTION_TILINGS,
  prepareAttention,
  TENSOR_CORE_ATTENTION_ORDER,
  tensorCoreWorkgroupBytes,
} from "../../src/gpu/kernels/attention.js";
import { convSpec, sameConv } from "../../src/gpu/kernels/conv2d.js";
import { gemmSpec } from "../../src/gpu/kernels/gemm.js";
import {
  DEFAULT_TILINGS,
  MAX_SPLIT_K,
  MIN_SPLIT_K_LENGTH,
  SMALL_GRID_TILINGS,
  SMALL_GRID_WORKGROUPS,
  SPLIT_K_BELOW_TILES,
  WIDE_GEMM_COLUMNS,
} from "../../src/gpu/kernels/matmul-kernel.js";
import {
  matmulGrid,
  matmulWgsl,
  normalSplitK,
  partialElements,
  tilingProblem,
} from "../../src/gpu/kernels/matmul-wgsl.js";
import { dawnToggles } from "../../src/gpu/node-gpu.js";
import { kernelKind, summariseCompiles } from "../../src/gpu/pipeline-cache.js";
import { erf, gelu, referenceConv, referenceGemm } from "../../src/gpu/reference/matmul.js";
import type { GpuCapabilities } from "../../src/gpu/types.js";
import {
  chooseKernelVariant,
  KERNEL_VARIANTS,
  preferredMatrixShape,
} from "../../src/gpu/variants.js";

function capabilities(
  features: string[],
  shapes: { m: number; n: number; k: number }[] = [],
): GpuCapabilities {
  return {
    features: new Set(features),
    matrixShapes: shapes,
    subgroupMinSize: 32,
    subgroupMaxSize: 32,
    limits: {
      maxStorageBufferBindingSize: 2 ** 31 - 4,
      maxBufferSize: 2 ** 31 - 4,
      maxComputeWorkgroupStorageSize: 49152,
      maxComputeInvocationsPerWorkgroup: 1024,
      maxComputeWorkgroupsPerDimension: 65535,
    },
    description: "test adapter",
    fallbackAdapter: false,
  };
}

const NVIDIA_SHAPES = [
  { m: 16, n: 16, k: 16 },
  { m: 16, n: 8, k: 16 },
  { m: 16, n: 8, k: 8 },
];
const H200 = capabilities(
  ["shader-f16", "subgroups", "timestamp-query", "chromium-experimental-subgroup-matrix"],
  NVIDIA_SHAPES,
);
const CHROME = capabilities(["shader-f16", "subgroups"]);
const SWIFTSHADER = capabilities(["subgroups", "timestamp-query"]);

describe("kernel variants", () => {
  it("is a frozen table", () => {
    expect(Object.isFrozen(KERNEL_VARIANTS)).toBe(true);
  });

  it("takes the tensor cores where the adapter has subgroup matrices, else the portable path", () => {
    expect(chooseKernelVariant(H200, "f16")).toEqual({
      path: "tensor-core",
      storage: "f16",
      matrix: { m: 16, n: 16, k: 16 },
      subgroupSize: 32,
    });
    expect(chooseKernelVariant(CHROME, "f16")).toEqual({ path: "portable", storage: "f16" });
    expect(chooseKernelVariant(SWIFTSHADER, "f32")).toEqual({ path: "portable", storage: "f32" });
    expect(chooseKernelVariant(H200, "f32")).toEqual({ path: "portable", storage: "f32" });
  });

  it("forces a path, and says what is missing when it cannot", () => {
    expect(chooseKernelVariant(H200, "f16", "portable")).toEqual({
      path: "portable",
      storage: "f16",
    });
    expect(() => chooseKernelVariant(CHROME, "f16", "tensor-core")).toThrow(
      /tensor-core f16 kernels cannot run on this adapter \(test adapter\): tensor-core: no chromium-experimental-subgroup-matrix/,
    );
    expect(() => chooseKernelVariant(SWIFTSHADER, "f16")).toThrow(
      /^fp16 asked for, but this adapter/,
    );
    expect(() => chooseKernelVariant(H200, "f32", "tensor-core")).toThrow(/needs f16/);
    const varying = { ...H200, subgroupMinSize: 8, subgroupMaxSize: 32 };
    expect(() => chooseKernelVariant(varying, "f16", "tensor-core")).toThrow(
      /subgroup size varies/,
    );
  });

  it("prefers the matrix shape with the largest K, then N", () => {
    expect(preferredMatrixShape([NVIDIA_SHAPES[2], NVIDIA_SHAPES[1]])).toEqual({
      m: 16,
      n: 8,
      k: 16,
    });
    expect(preferredMatrixShape([])).toBeUndefined();
  });

  it("asks Dawn for f16 on NVIDIA, and for exact timestamps only when benchmarking", () => {
    expect(dawnToggles()).toEqual([
      "enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia",
      "backend=vulkan",
    ]);
    expect(dawnToggles({ bench: true })).toContain("disable-dawn-features=timestamp_quantization");
  });
});

describe("buffers", () => {
  it("rounds sizes to a few classes", () => {
    expect(sizeClass(1)).toBe(16);
    expect(sizeClass(100)).toBe(112);
    expect(sizeClass(1000)).toBe(1024);
    expect(sizeClass(1025)).toBe(2048);
  });

  it("refuses a buffer past the adapter's limits in one line", () => {
    const limits = { maxStorageBufferBindingSize: 1000, maxBufferSize: 4000 };
    expect(() => checkBufferSize(1000, limits, "x")).not.toThrow();
    expect(() => checkBufferSize(1001, limits, "conv output")).toThrow(
      "conv output needs a 1001-byte GPU buffer, more than this adapter allows in one binding (1000 bytes: maxStorageBufferBindingSize 1000, maxBufferSize 4000); use a smaller batch or image size",
    );
  });

  it("hands the same buffers to the same sequence of requests, whatever order they came back in", () => {
    let made = 0;
    const device = {
      createBuffer: ({ size }: { size: number }) => ({ id: made++, size }),
    } as unknown as GPUDevice;
    const pool = new BufferPool(device, {
      maxStorageBufferBindingSize: 2 ** 20,
      maxBufferSize: 2 ** 20,
    });
    const ids = (buffers: GPUBuffer[]) => buffers.map((b) => (b as unknown as { id: number }).id);
    // A call: three live at once, one freed and taken again, then one of another size class.
    const call = (releaseOrder: number[]) => {
      const a = [pool.acquire(1000), pool.acquire(1000), pool.acquire(1000)];
      pool.release(a[1]);
      const b = [pool.acquire(900), pool.acquire(5000)];
      const all = [...a, ...b];
      for (const i of releaseOrder) pool.release(all[i]);
      return ids(all);
    };
    const first = call([0, 1, 2, 3, 4]);
    expect(first).toEqual([0, 1, 2, 1, 3]);
    expect(call([4, 2, 0, 3, 1])).toEqual(first);
    expect(call([2, 1, 0, 4, 3])).toEqual(first);
    expect(made).toBe(4);
  });
});

describe("matmul kernels' shapes", () => {
  const f16 = chooseKernelVariant(H200, "f16");

  it("launches one workgroup per output tile and batch entry", () => {
    // The GEMMs' default tile: 64 rows by 128 columns.
    const spec = gemmSpec(f16, { batch: 2, m: 4096, n: 1280, k: 320, sharedB: true });
    expect(matmulGrid(spec)).toEqual([10, 64, 2]);
    const geglu = gemmSpec(
      f16,
      { batch: 2, m: 3000, n: 1280, k: 320, sharedB: true },
      { epilogue: "geglu" },
    );
    // GEGLU's B has 2 x 1280 columns: a wide GEMM, on 256-column tiles (128 outputs each).
    expect(geglu.tiling).toEqual(DEFAULT_TILINGS.wideGemm);
    expect(matmulGrid(geglu)).toEqual([10, 24, 2]);
    const conv = convSpec(f16, {
      batch: 2,
      height: 128,
      width: 128,
      inChannels: 320,
      outChannels: 320,
      kernel: 3,
      stride: 2,
      padding: 1,
    });
    expect([conv.m, conv.n, conv.k]).toEqual([2 * 64 * 64, 320, 2880]);
  });

  it("refuses tilings the adapter or problem cannot take", () => {
    const base = gemmSpec(
      f16,
      { batch: 1, m: 64, n: 64, k: 64, sharedB: true },
      { tiling: DEFAULT_TILINGS.tensorCore },
    );
    expect(tilingProblem(base, 1024, 49152)).toBeUndefined();
    expect(tilingProblem(base, 128, 49152)).toMatch(/256 threads per workgroup/);
    expect(tilingProblem(base, 1024, 16384)).toMatch(/bytes of workgroup memory/);
    const odd = { ...base, tiling: { ...base.tiling, tileM: 100 } };
    expect(tilingProblem(odd, 1024, 49152)).toBeDefined();
    const portable = gemmSpec(chooseKernelVariant(H200, "f32"), {
      batch: 1,
      m: 8,
      n: 8,
      k: 8,
      sharedB: true,
    });
    expect(tilingProblem({ ...portable, tiling: base.tiling }, 1024, 49152)).toMatch(
      /needs an f16 tensor-core variant/,
    );
  });

  it("generates the storage type once and the tensor-core instructions on that path", () => {
    const spec = gemmSpec(
      f16,
      { batch: 1, m: 64, n: 64, k: 64, sharedB: true },
      { bias: true, epilogue: "gelu" },
    );
    const code = matmulWgsl(spec);
    expect(code).toMatch(
      /^enable f16, chromium_experimental_subgroup_matrix, subgroups;\nalias T = f16;/,
    );
    expect(code).toContain("subgroupMatrixMultiplyAccumulate");
    expect(code).toContain("gelu_f32");
    // Dawn's current load/store spelling (majorness as a template argument) unless the first,
    // deprecated one is asked for.
    expect(code).toMatch(
      /subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>, row_major>\(&a_tile, /,
    );
    expect(code).toMatch(/subgroupMatrixStore<row_major>\(&scratch, /);
    expect(code).not.toMatch(/subgroupMatrix(Load<[^>]*>>|Store)\([^;]*, (true|false), /);
    const legacy = matmulWgsl({ ...spec, matrixSpelling: "argument" });
    expect(legacy).toMatch(
      /subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>\(&a_tile, [^;]*, false, /,
    );
    expect(legacy).toMatch(/subgroupMatrixStore\(&scratch, [^;]*, false, /);
    const f32 = matmulWgsl(
      gemmSpec(chooseKernelVariant(SWIFTSHADER, "f32"), {
        batch: 1,
        m: 5,
        n: 5,
        k: 5,
        sharedB: true,
      }),
    );
    expect(f32).toMatch(/^alias T = f32;/);
    expect(f32).not.toContain("subgroup_matrix");
    expect(f32).not.toContain("gelu_f32");
  });

  it("rejects impossible shapes in one line", () => {
    expect(() => gemmSpec(f16, { batch: 1, m: 0, n: 4, k: 4, sharedB: true })).toThrow(
      "gemm: m must be a positive integer, got 0",
    );
    expect(() =>
      convSpec(f16, {
        batch: 1,
        height: 2,
        width: 2,
        inChannels: 4,
        outChannels: 4,
        kernel: 3,
        stride: 1,
        padding: 0,
      }),
    ).toThrow("conv2d: a 2x2 map is smaller than the 3x3 kernel");
  });
});

describe("float64 references", () => {
  it("computes erf and GELU to double precision", () => {
    expect(erf(0)).toBe(0);
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(erf(-2)).toBeCloseTo(-0.9953222650189527, 14);
    expect(erf(3.5)).toBeCloseTo(0.9999992569016276, 14);
    expect(gelu(1)).toBeCloseTo(0.8413447460685429, 14);
  });

  it("gives a 1x1 convolution the same values as the GEMM it is", () => {
    const shape = {
      batch: 2,
      height: 3,
      width: 5,
      inChannels: 6,
      outChannels: 7,
      kernel: 1,
      stride: 1,
      padding: 0,
    };
    const x = randomValues(2 * 15 * 6, 1, "f32");
    const w = randomValues(6 * 7, 2, "f32");
    const model = { storage: "f32" as const, tensorCore: false };
    const conv = referenceConv(shape, { x, w }, model);
    const gemm = referenceGemm(
      { batch: 1, m: 30, n: 7, k: 6, sharedB: true },
      { a: x, b: w },
      "none",
      model,
    );
    expect(Array.from(conv.value)).toEqual(Array.from(gemm.value));
  });

  it("pads a 3x3 convolution with zeros (a corner sees 4 taps)", () => {
    const shape = {
      batch: 1,
      height: 3,
      width: 3,
      inChannels: 1,
      outChannels: 1,
      kernel: 3,
      stride: 1,
      padding: 1,
    };
    const ones = new Float32Array(9).fill(1);
    const out = referenceConv(shape, { x: ones, w: ones }, { storage: "f32", tensorCore: false });
    expect(Array.from(out.value)).toEqual([4, 6, 4, 6, 9, 6, 4, 6, 4]);
  });

  it("fuses GEGLU as hidden * GELU(gate) and adds the residual last", () => {
    const a = Float32Array.of(1, 2);
    const b = Float32Array.of(0.5, -1, 0.25, 2); // K = 2 rows of [hidden, gate]
    const bias = Float32Array.of(0.125, 0.25);
    const residual = Float32Array.of(3);
    const out = referenceGemm(
      { batch: 1, m: 1, n: 1, k: 2, sharedB: true },
      { a, b, bias, residual },
      "geglu",
      {
        storage: "f32",
        tensorCore: false,
      },
    );
    expect(out.value[0]).toBeCloseTo((0.5 + 0.5 + 0.125) * gelu(-1 + 4 + 0.25) + 3, 12);
  });

  it("fails a result that is wrong by more than the arithmetic allows, and passes one within it", () => {
    const shape = { batch: 1, m: 8, n: 8, k: 64, sharedB: true };
    const a = randomValues(8 * 64, 3, "f16");
    const b = randomValues(64 * 8, 4, "f16");
    const bias = randomValues(8, 5, "f16");
    const f16 = { storage: "f16" as const, tensorCore: true };
    const ref = referenceGemm(shape, { a, b, bias }, "none", f16);
    const rounded = new Float32Array(ref.value); // f32 rounding of the exact value: inside
    expect(compareWithReference(rounded, ref).worstRatio).toBeLessThanOrEqual(1);
    const noBias = referenceGemm(shape, { a, b }, "none", f16);
    expect(compareWithReference(new Float32Array(noBias.value), ref).worstRatio).toBeGreaterThan(1);
    const nan = new Float32Array(ref.value);
    nan[3] = Number.NaN;
    expect(compareWithReference(nan, ref)).toMatchObject({ nonFinite: 1, worstIndex: 3 });
  });
});

const workgroupsOf = (spec: Parameters<typeof matmulGrid>[0]) =>
  matmulGrid(spec).reduce((a, b) => a * b, 1);

describe("default matmul tilings", () => {
  const f16 = chooseKernelVariant(H200, "f16");
  it("takes the measured wide tile for wide GEMMs only, never for convolutions or the portable path", () => {
    const gemm = (n: number) => gemmSpec(f16, { batch: 1, m: 32768, n, k: 4096, sharedB: true });
    expect(gemm(4096).tiling).toEqual(DEFAULT_TILINGS.wideGemm);
    expect(gemm(WIDE_GEMM_COLUMNS).tiling).toEqual(DEFAULT_TILINGS.wideGemm);
    expect(gemm(WIDE_GEMM_COLUMNS - 1).tiling).toEqual(DEFAULT_TILINGS.gemm);
    expect(gemm(320).tiling).toEqual(DEFAULT_TILINGS.gemm);
    const conv = convSpec(f16, {
      batch: 2,
      height: 64,
      width: 64,
      inChannels: 1280,
      outChannels: 4096,
      kernel: 3,
      stride: 1,
      padding: 1,
    });
    expect(conv.tiling).toEqual(DEFAULT_TILINGS.tensorCore);
    const portable = gemmSpec(chooseKernelVariant(CHROME, "f16"), {
      batch: 1,
      m: 64,
      n: 4096,
      k: 64,
      sharedB: true,
    });
    expect(portable.tiling).toEqual(DEFAULT_TILINGS.portable);
  });

  it("steps down to smaller tiles while the grid has fewer than SMALL_GRID_WORKGROUPS workgroups", () => {
    const [half, quarter] = SMALL_GRID_TILINGS;
    const gemm = (m: number, n: number, batch = 1) =>
      gemmSpec(f16, { batch, m, n, k: 1280, sharedB: batch === 1 }).tiling;
    // 2 x 128 x 128 tokens by 320 (1024 px's level 1): 512 x 3 tiles of the GEMMs' default.
    expect(gemm(32768, 320)).toEqual(DEFAULT_TILINGS.gemm);
    // 2048 x 1280 (level 3): 320 tiles of the GEMMs' default, which has half the rows.
    expect(gemm(2048, 1280)).toBe(DEFAULT_TILINGS.gemm);
    expect(half).toBe(DEFAULT_TILINGS.gemm);
    expect(matmulGrid(gemmSpec(f16, { batch: 1, m: 2048, n: 1280, k: 64, sharedB: true }))).toEqual(
      [10, 32, 1],
    );
    // 512 x 1280 (level 4): 40, then 80, then 160 workgroups: the smallest tile.
    expect(gemm(512, 1280)).toEqual(quarter);
    // The batch counts: 16 entries of 128 x 128 are 16 default tiles, 64 of the smallest.
    expect(gemm(128, 128, 16)).toEqual(quarter);
    // A wide GEMM steps down from the wide tile (512 x 2 x 5120: 80 wide tiles).
    expect(gemm(512, 10240)).toEqual(half);
    expect(gemm(8192, 10240)).toEqual(DEFAULT_TILINGS.wideGemm);
    // Convolutions count rows as pixels of the whole batch: 2 x 16 x 16 x 1280 -> 1280.
    const conv = (side: number, channels: number) =>
      convSpec(f16, {
        batch: 2,
        height: side,
        width: side,
        inChannels: channels,
        outChannels: channels,
        kernel: 3,
        stride: 1,
        padding: 1,
      }).tiling;
    expect(conv(16, 1280)).toEqual(quarter);
    expect(conv(64, 640)).toEqual(DEFAULT_TILINGS.tensorCore);
    expect(workgroupsOf(gemmSpec(f16, { batch: 1, m: 512, n: 1280, k: 64, sharedB: true }))).toBe(
      160,
    );
    expect(SMALL_GRID_WORKGROUPS).toBe(256);
  });

  it("splits K where the output tiles alone leave the GPU idle and K is long", () => {
    const conv = (side: number, channels: number) =>
      convSpec(
        f16,
        sameConv({
          batch: 2,
          height: side,
          width: side,
          inChannels: channels,
          outChannels: channels,
        }),
      );
    // 512 px, the deepest level: 2 x 8 x 8 pixels by 1280 (40 tiles of 64 x 64), K = 11,520 in
    // 360 steps of 32: seven splits of 52 steps (the last 48), 280 workgroups.
    const deepest = conv(8, 1280);
    expect(deepest.tiling).toEqual(SMALL_GRID_TILINGS[1]);
    expect(deepest.splitK).toBe(7);
    expect(matmulGrid(deepest)).toEqual([20, 2, 7]);
    expect(workgroupsOf(deepest)).toBe(280);
    expect(partialElements(deepest)).toBe(7 * 128 * 1280);
    // Enough tiles already (SPLIT_K_BELOW_TILES or more): none. 16 x 16 makes 160 tiles; then the
    // 1024 px levels above the deepest, every GEMM of 320.
    expect(SPLIT_K_BELOW_TILES).toBe(128);
    expect(conv(16, 1280).splitK).toBeUndefined();
    expect(conv(32, 1280).splitK).toBeUndefined();
    expect(conv(64, 640).splitK).toBeUndefined();
    // Short K (fewer than 2 x MIN_SPLIT_K_LENGTH values): none, however few the tiles.
    expect(
      gemmSpec(f16, { batch: 1, m: 64, n: 64, k: 2 * MIN_SPLIT_K_LENGTH - 1, sharedB: true })
        .splitK,
    ).toBeUndefined();
    // At most MAX_SPLIT_K splits: one 64 x 64 tile over K = 65,536.
    expect(gemmSpec(f16, { batch: 1, m: 64, n: 64, k: 65536, sharedB: true }).splitK).toBe(
      MAX_SPLIT_K,
    );
    // GEGLU's tiles hold half their columns of output: 128 x 1280 is 80 tiles of 64 x 32.
    expect(
      gemmSpec(f16, { batch: 1, m: 128, n: 1280, k: 1280, sharedB: true }, { epilogue: "geglu" })
        .splitK,
    ).toBe(4);
    // Asked for: every split keeps a K tile (9 tiles in 4 asked: 3 splits of 3), and 1 is none.
    const asked = (splitK: number) =>
      gemmSpec(f16, { batch: 1, m: 64, n: 64, k: 288, sharedB: true }, { splitK }).splitK;
    expect(asked(4)).toBe(3);
    expect(asked(1)).toBeUndefined();
    expect(() => asked(0)).toThrow(/split-K must be a whole number of 1 or more, not 0/);
    expect(normalSplitK(9, 4)).toBe(3);
    expect(normalSplitK(10, 4)).toBe(4);
    expect(normalSplitK(2, 5)).toBe(2);
  });

  it("writes a GEMM channels-first only where its rows are whole images of an unbatched product", () => {
    const shape = { batch: 1, m: 70, n: 24, k: 40, sharedB: true };
    const spec = gemmSpec(f16, shape, { residual: true, planeSize: 35 });
    expect(spec.planeSize).toBe(35);
    expect(spec.label).toMatch(/ residual channels-first$/);
    expect(gemmSpec(f16, shape).planeSize).toBeUndefined();
    expect(() => gemmSpec(f16, shape, { planeSize: 30 })).toThrow(
      "gemm: a channels-first output needs batch 1 and M (70) a whole number of planes of 30",
    );
    expect(() => gemmSpec(f16, { ...shape, batch: 2 }, { planeSize: 35 })).toThrow(/needs batch 1/);
    expect(() => gemmSpec(f16, shape, { planeSize: 0 })).toThrow(/planes of 0/);
    expect(() => gemmSpec(f16, { ...shape, m: 5 }, { planeSize: 2.5 })).toThrow(/planes of 2.5/);
  });
});

describe("tensor-core attention source", () => {
  const f16 = chooseKernelVariant(H200, "f16");
  /** A context that compiles nothing: it records each source and refuses those `refuse` matches. */
  function recorder(refuse?: RegExp): { ctx: GpuContext; sources: string[] } {
    const sources: string[] = [];
    const ctx = {
      capabilities: H200,
      checkSize: () => {},
      pipeline: async ({ code }: { code: string }) => {
        sources.push(code);
        if (refuse?.test(code)) throw new Error("WGSL does not compile (refused)");
        return { getBindGroupLayout: () => ({}) } as unknown as GPUComputePipeline;
      },
    } as unknown as GpuContext;
    return { ctx, sources };
  }
  const shape = { batch: 2, queries: 4096, heads: 8, headDim: 40, kvTokens: 4096 };

  it("uses the current load/store spelling and the fastest measured tiling by default", async () => {
    const { ctx, sources } = recorder();
    const kernel = await prepareAttention(ctx, f16, shape);
    expect(kernel.tiling).toEqual(DEFAULT_ATTENTION_TILINGS.tensorCore);
    expect(kernel.tiling).toEqual(TENSOR_CORE_ATTENTION_ORDER[0]);
    expect(kernel.matrixSpelling).toBe("template");
    expect(sources).toHaveLength(1);
    expect(sources[0]).toMatch(
      /subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>, col_major>\(/,
    );
    expect(sources[0]).toMatch(/subgroupMatrixStore<row_major>\(&s_buf, /);
    expect(sources[0]).not.toMatch(/, (true|false), \d+u\)/);
    // 8 subgroups of 16 query rows per workgroup.
    expect(kernel.workgroups).toEqual([4096 / 128, 16, 1]);
  });

  it("falls back to the first spelling where the current one does not compile", async () => {
    const { ctx, sources } = recorder(/row_major|col_major/);
    const kernel = await prepareAttention(ctx, f16, shape);
    expect(kernel.matrixSpelling).toBe("argument");
    expect(sources).toHaveLength(2);
    expect(sources[1]).toMatch(/subgroupMatrixStore\(&s_buf, [^;]*, false, \d+u\);/);
  });

  it("takes a smaller tile where the head dim outgrows workgroup memory", async () => {
    const { ctx } = recorder();
    const kernel = await prepareAttention(ctx, f16, { ...shape, headDim: 160 });
    const limit = H200.limits.maxComputeWorkgroupStorageSize;
    expect(tensorCoreWorkgroupBytes(f16, 160, kernel.tiling)).toBeLessThanOrEqual(limit);
    const first = TENSOR_CORE_ATTENTION_ORDER.indexOf(kernel.tiling);
    expect(first).toBeGreaterThan(0);
    for (const t of TENSOR_CORE_ATTENTION_ORDER.slice(0, first))
      expect(tensorCoreWorkgroupBytes(f16, 160, t)).toBeGreaterThan(limit);
  });
});

describe("compile summaries", () => {
  it("names a kernel's kind by the words before its shape, without the engine's prefix", () => {
    expect(kernelKind("engine group norm silu 2x64x64x320")).toBe("group norm silu");
    expect(kernelKind("attention 2x4096x8x40 keys 4096 f16 tensor-core 8sg x 32 keys")).toBe(
      "attention",
    );
    expect(kernelKind("conv3x3/1 2x64x64 320->320")).toBe("conv3x3/1");
    expect(kernelKind("engine Add")).toBe("Add");
  });

  it("sums the compiles per kind, slowest kind first", () => {
    // The attention overlaps both GEMMs: 55 ms of compiling over a 40 ms span.
    const summary = summariseCompiles([
      { label: "gemm 1x2x3 a", start: 100, end: 110 },
      { label: "attention 2x2", start: 105, end: 135 },
      { label: "gemm 4x5x6 b", start: 125, end: 140 },
    ]);
    expect(summary).toEqual({
      pipelines: 3,
      ms: 55,
      wallMs: 40,
      byKind: [
        { kind: "attention", count: 1, ms: 30 },
        { kind: "gemm", count: 2, ms: 25 },
      ],
    });
    expect(summariseCompiles([])).toEqual({ pipelines: 0, ms: 0, wallMs: 0, byKind: [] });
  });
});
