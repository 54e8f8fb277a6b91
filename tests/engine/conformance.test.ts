// The kernels engine against the UNet fixture cases on SwiftShader (the Vulkan driver on the CPU
// that Debian's Chromium ships), f32: the same graphs the onnxruntime path runs (tests/models),
// executed by src/engine, each output within 1e-4 of the reference (FIXTURES.md). SwiftShader
// runs the tiny UNet's thousand launches in about ten seconds per call on a loaded 2-core machine,
// so CI takes the baseline, ToDo and ToMe at one size, and every VAE case (one to two minutes in all);
// `vite-node tests/engine/conformance.child.ts [model]` runs every case of a model. Dawn finds its driver through the environment a process starts with, so the work
// runs in a child process.
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { runOnSwiftShader } from "../swiftshader.js";
import type { CaseReport } from "./conformance.child.js";

interface Report {
  readonly results: readonly CaseReport[];
  readonly errors: Record<string, string>;
  readonly fallbackAdapter: boolean;
}

async function child(...args: string[]): Promise<Report> {
  const last = await runOnSwiftShader(join("tests", "engine", "conformance.child.ts"), args, {
    timeout: 280_000,
  });
  return JSON.parse(last) as Report;
}

describe("the kernels engine on SwiftShader, f32", () => {
  let unet: Report;
  let vae: Report;
  beforeAll(async () => {
    unet = await child("sd15-tiny", "baseline,todo-nearest-2,tome-kv-0.5", "16x16");
    vae = await child("vae");
  }, 600_000);

  it("runs the UNet's baseline, ToDo and ToMe cases within 1e-4 of the reference", () => {
    expect(unet.errors).toEqual({});
    expect(unet.results.map((r) => r.name)).toEqual([
      "unet-sd15-tiny 16x16 baseline",
      "unet-sd15-tiny 16x16 todo-nearest-2",
      "unet-sd15-tiny 16x16 tome-kv-0.5",
    ]);
    for (const r of unet.results) expect(r.maxAbsDiff, r.name).toBeLessThanOrEqual(1e-4);
  });

  it("reads SwiftShader as a fallback adapter (the engine's small portable tile runs the cases)", () => {
    expect(unet.fallbackAdapter).toBe(true);
  });

  it("runs every VAE case (decode, encoder mean and log-variance) within 1e-4", () => {
    expect(vae.errors).toEqual({});
    expect(vae.results).toHaveLength(9);
    for (const r of vae.results) expect(r.maxAbsDiff, r.name).toBeLessThanOrEqual(1e-4);
  });

  it("records a whole call as one submit, weights uploaded at first use without a round trip", () => {
    for (const r of [...unet.results.slice(0, 2), ...vae.results]) {
      expect(r.hostFallbacks, r.name).toEqual({});
      expect(r.readbacks, r.name).toBe(0);
      expect(r.submits, r.name).toBe(1);
    }
  });

  it("reuses a warm call's bind groups and gives the same output", () => {
    const base = unet.results[0];
    const again = base.again;
    if (!again) throw new Error("the baseline was not run a second time");
    expect(again.diff).toBe(0);
    expect(again.launches).toBe(base.launches);
    expect(base.bindGroups).toBeGreaterThan(base.launches / 2);
    // Made again only for launches that read the call's own uploads (its inputs, the timestep
    // embedding computed on the host): a few of the thousand.
    expect(again.bindGroups).toBeLessThan(base.launches / 10);
  });

  it("runs MatMul, Conv and attention on src/gpu's tuned kernels and group norm as one kernel", () => {
    for (const r of [...unet.results, ...vae.results]) {
      expect(r.kernels["tuned gemm"], r.name).toBeGreaterThan(0);
      expect(r.kernels["tuned conv"], r.name).toBeGreaterThan(0);
      expect(r.kernels["tuned attention"], r.name).toBeGreaterThan(0);
      expect(r.kernels.matmul ?? 0, r.name).toBe(0);
      // The VAE encoder's bottom-right padded downsampling included (the padding is written).
      expect(r.kernels.conv ?? 0, r.name).toBe(0);
      expect(r.kernels.attention ?? 0, r.name).toBe(0);
      // Every group norm (statistics, scale and shift, and the SiLU after most) is one launch.
      expect(r.kernels["group norm silu"], r.name).toBeGreaterThan(0);
      expect(r.kernels.InstanceNormalization ?? 0, r.name).toBe(0);
    }
    for (const r of unet.results) {
      expect(r.kernels["tuned layernorm"], r.name).toBeGreaterThan(0);
      expect(r.kernels.LayerNormalization ?? 0, r.name).toBe(0);
      // The feed-forward's GEGLU runs in the GEMM's epilogue: no GELU left on its own.
      expect(r.kernels.Erf ?? 0, r.name).toBe(0);
    }
  });

  it("runs ToMe's selection steps on the host, and says so", () => {
    const tome = unet.results[2];
    expect(Object.keys(tome.hostFallbacks).sort()).toEqual([
      "ArgMax",
      "ReduceL2",
      "ScatterND",
      "TopK",
    ]);
    expect(tome.readbacks).toBeGreaterThan(0);
  });
});
