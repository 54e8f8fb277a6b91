// The launch binds Q, K, V and the output to every attention pipeline, and a pipeline's layout
// holds only the bindings its shader uses: a variant that never reads one (an ablation) would
// be rejected at bind time. Each generated shader must use all four.
import { describe, expect, it } from "vitest";
import {
  type AttentionTiling,
  DEFAULT_ATTENTION_TILINGS,
  prepareAttention,
} from "../../src/gpu/kernels/attention.js";
import type { KernelVariant } from "../../src/gpu/variants.js";
import { capturingContext } from "./capturing-context.js";

/** Names of the `@binding` variables that the shader's body never mentions. */
function unusedBindings(code: string): string[] {
  const names = [...code.matchAll(/@binding\(\d+\)\s+var<[^>]+>\s+(\w+)/g)].map((m) => m[1]);
  const body = code.slice(code.indexOf("fn main"));
  return names.filter((name) => !new RegExp(`\\b${name}\\b`).test(body));
}

const shape = { batch: 1, queries: 64, heads: 2, headDim: 40, kvTokens: 64 };
const tensorCore: KernelVariant = {
  path: "tensor-core",
  storage: "f16",
  matrix: { m: 16, n: 16, k: 16 },
  subgroupSize: 32,
};
const base = { subgroups: 8, keysPerTile: 32 };
const tilings: [KernelVariant, AttentionTiling][] = [
  [{ path: "portable", storage: "f32" }, DEFAULT_ATTENTION_TILINGS.portable],
  [tensorCore, base],
  [tensorCore, { ...base, ablation: "o-in-matrices" }],
  [tensorCore, { ...base, ablation: "no-softmax" }],
  [tensorCore, { ...base, ablation: "mma-only" }],
];

describe("attention shaders", () => {
  for (const [variant, tiling] of tilings)
    it(`use q, k, v and out: ${variant.path} ${tiling.ablation ?? "full"}`, async () => {
      const sources: string[] = [];
      await prepareAttention(capturingContext(sources), variant, shape, tiling);
      expect(sources.length).toBeGreaterThan(0);
      for (const code of sources) {
        expect(code).toContain("@binding(3)");
        expect(unusedBindings(code)).toEqual([]);
      }
    });
});
