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
      return await this.device.createComputePipelineAsync({
        label: source.label,
        layout: "auto",
        compute: { module, entryPoint: source.entryPoint ?? "main" },
      });
    } catch (error) {
      throw new Error(
        `${source.label}: cannot create the pipeline (${(error as Error).message.split("\n")[0]})`,
      );
    }
  }
}
