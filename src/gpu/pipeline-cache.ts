/**
 * Compute pipelines compiled once per WGSL source: kernels generate their source from a shape and
 * variant, and the source text itself is the key, so two calls that would compile the same shader
 * share one pipeline. Compilation errors become one-line errors that name the kernel.
 */
import { PromiseMemo } from "../util/promise-memo.js";

export interface ComputeKernelSource {
  /** A name for errors and profiles, e.g. `gemm 128x128 f16 tensor-core`. */
  readonly label: string;
  readonly code: string;
  readonly entryPoint?: string;
}

export class PipelineCache {
  private readonly pipelines = new PromiseMemo<string, GPUComputePipeline>();
  /** Pipelines of other entry points, keyed by the entry point and the text. */
  private readonly named = new PromiseMemo<string, GPUComputePipeline>();
  /** Compiler warnings of the shaders compiled so far, first line each (deprecations show here). */
  readonly warnings: string[] = [];
  /**
   * Each pipeline compiled so far, in the order they finished: its label, and when its compile
   * began and ended (performance.now ms, from the shader module's creation to the pipeline's:
   * the driver's compile, near nothing where its disk cache has it).
   */
  readonly compiles: Compile[] = [];

  constructor(private readonly device: GPUDevice) {}

  get size(): number {
    return this.pipelines.size + this.named.size;
  }

  /** The pipeline for a source, compiled on first use (its bind group layout is `auto`). */
  get(source: ComputeKernelSource): Promise<GPUComputePipeline> {
    // A failed compilation is not cached: the next call reports it again. The common case (entry
    // point main) keys by the text itself: no key string a kernel's length is built per lookup.
    const entry = source.entryPoint ?? "main";
    const memo = entry === "main" ? this.pipelines : this.named;
    const key = entry === "main" ? source.code : `${entry}\n${source.code}`;
    return memo.get(key, () => this.compile(source));
  }

  private async compile(source: ComputeKernelSource): Promise<GPUComputePipeline> {
    const start = performance.now();
    const module = this.device.createShaderModule({ code: source.code, label: source.label });
    const info = await module.getCompilationInfo();
    for (const m of info.messages)
      if (m.type === "warning") this.warnings.push(`${source.label}: ${m.message.split("\n")[0]}`);
    const errors = info.messages.filter((m) => m.type === "error");
    if (errors.length > 0) {
      const first = errors[0];
      throw new Error(
        `${source.label}: WGSL does not compile (line ${first.lineNum}: ${first.message.split("\n")[0]})`,
      );
    }
    try {
      const pipeline = await this.device.createComputePipelineAsync({
        label: source.label,
        layout: "auto",
        compute: { module, entryPoint: source.entryPoint ?? "main" },
      });
      this.compiles.push({ label: source.label, start, end: performance.now() });
      return pipeline;
    } catch (error) {
      throw new Error(
        `${source.label}: cannot create the pipeline (${(error as Error).message.split("\n")[0]})`,
      );
    }
  }
}

export interface Compile {
  readonly label: string;
  readonly start: number;
  readonly end: number;
}

export interface CompileSummary {
  readonly pipelines: number;
  /** The compiles' ms summed (more than wallMs where they overlapped). */
  readonly ms: number;
  /** From the first compile's start to the last one's end. */
  readonly wallMs: number;
  /** Per kind of kernel (kernelKind: attention, gemm, conv3x3/1, ...), slowest first. */
  readonly byKind: readonly {
    readonly kind: string;
    readonly count: number;
    readonly ms: number;
  }[];
}

/**
 * A label's kind: its first word and the words after it up to one with a digit (the shape),
 * without the engine's `engine ` prefix: `attention 2x4096...` is attention, `engine group norm
 * silu 2x64x64x320` group norm silu.
 */
export function kernelKind(label: string): string {
  const [first = "", ...rest] = label.replace(/^engine /, "").split(" ");
  const words = [first];
  for (const word of rest) {
    if (/\d/.test(word)) break;
    words.push(word);
  }
  return words.join(" ");
}

/** Sums compiles per kind of kernel. */
export function summariseCompiles(compiles: readonly Compile[]): CompileSummary {
  const kinds = new Map<string, { count: number; ms: number }>();
  let ms = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (const c of compiles) {
    ms += c.end - c.start;
    first = Math.min(first, c.start);
    last = Math.max(last, c.end);
    const kind = kernelKind(c.label);
    const k = kinds.get(kind) ?? { count: 0, ms: 0 };
    k.count++;
    k.ms += c.end - c.start;
    kinds.set(kind, k);
  }
  const byKind = [...kinds].map(([kind, k]) => ({ kind, ...k })).sort((a, b) => b.ms - a.ms);
  return { pipelines: compiles.length, ms, wallMs: compiles.length ? last - first : 0, byKind };
}
