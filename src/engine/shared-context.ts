/**
 * One GPU device for the models of a pipeline on the kernels engine, so that tensors pass
 * between them without leaving it (the UNet's prediction into the sampler step, the next sample
 * back): made when the first runner asks, destroyed when the last one is released. A failed
 * creation is not kept, so the next runner tries again.
 */
import { GpuContext, type GpuContextOptions } from "../gpu/context.js";

export interface GpuLease {
  readonly context: GpuContext;
  /** Ends this runner's use of the context (once; later calls do nothing). */
  release(): void;
}

export class SharedGpuContext {
  private context: Promise<GpuContext> | undefined;
  private users = 0;

  constructor(private readonly options: GpuContextOptions = {}) {}

  async acquire(): Promise<GpuLease> {
    this.users++;
    this.context ??= GpuContext.create(this.options);
    const made = this.context;
    let context: GpuContext;
    try {
      context = await made;
    } catch (error) {
      if (this.context === made) this.context = undefined;
      this.users--;
      throw error;
    }
    let released = false;
    return {
      context,
      release: () => {
        if (released) return;
        released = true;
        this.users--;
        if (this.users > 0 || this.context !== made) return;
        this.context = undefined;
        context.destroy();
      },
    };
  }

  /** Runners holding the context now (for tests). */
  get holders(): number {
    return this.users;
  }
}
