/**
 * GPU buffers kept for reuse. Sizes round up to a power of two (at most 2x waste, few distinct
 * sizes), so a tensor freed by one kernel serves the next of similar size without a new
 * allocation; every size is checked against the adapter's limits first.
 */

/**
 * GPUBufferUsage's bits (fixed by the WebGPU specification; dawn.node exposes the global only
 * through its `globals`, so they are spelled out here).
 */
export const BUFFER_USAGE = Object.freeze({
  /** A storage buffer that can be written from and copied to the host. */
  storage: 0x0080 | 0x0004 | 0x0008,
  /** A buffer the host maps to read results. */
  readback: 0x0001 | 0x0008,
});

export interface BufferLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
}

/** Bytes rounded up to the pool's size class (a multiple of 16, then a power of two). */
export function sizeClass(bytes: number): number {
  const aligned = Math.max(16, Math.ceil(bytes / 16) * 16);
  return aligned <= 256 ? aligned : 2 ** Math.ceil(Math.log2(aligned));
}

/** Throws a one-line error when a storage buffer of `bytes` would outgrow the adapter. */
export function checkBufferSize(bytes: number, limits: BufferLimits, label: string): void {
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  if (bytes > limit)
    throw new Error(
      `${label} needs a ${bytes}-byte GPU buffer, more than this adapter allows in one binding (${limit} bytes: maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize}, maxBufferSize ${limits.maxBufferSize}); use a smaller batch or image size`,
    );
}

/**
 * Free buffers are handed out lowest serial first (the order they were made in), not last
 * released first: the same sequence of acquires and releases then gets the same buffers on every
 * run, whatever order the last run released them in, and a caller that keys bind groups by
 * buffer (the kernels engine) finds them again on the next call.
 */
export class BufferPool {
  /** Free buffers by size class, highest serial first (the next one out is at the end). */
  private readonly free = new Map<number, GPUBuffer[]>();
  private readonly sizes = new WeakMap<GPUBuffer, number>();
  private readonly serials = new WeakMap<GPUBuffer, number>();
  private made = 0;
  /** Bytes held by buffers handed out or kept free. */
  allocatedBytes = 0;

  constructor(
    private readonly device: GPUDevice,
    private readonly limits: BufferLimits,
  ) {}

  /** A storage buffer of at least `bytes` (copyable both ways), new or reused. */
  acquire(bytes: number, label = "tensor"): GPUBuffer {
    checkBufferSize(bytes, this.limits, label);
    // Round up, but never past what the adapter allows: the exact size still fits.
    const limit = Math.min(this.limits.maxStorageBufferBindingSize, this.limits.maxBufferSize);
    const size = Math.min(sizeClass(bytes), Math.floor(limit / 4) * 4);
    const reused = this.free.get(size)?.pop();
    if (reused) return reused;
    const buffer = this.device.createBuffer({ size, usage: BUFFER_USAGE.storage, label });
    this.sizes.set(buffer, size);
    this.serials.set(buffer, this.made++);
    this.allocatedBytes += size;
    return buffer;
  }

  /** Hands a buffer back for reuse; its contents are undefined from here on. */
  release(buffer: GPUBuffer): void {
    const size = this.sizes.get(buffer);
    if (size === undefined) throw new Error("this buffer did not come from the pool");
    const list = this.free.get(size) ?? [];
    if (list.includes(buffer)) return;
    const serial = this.serials.get(buffer) ?? 0;
    let at = list.length;
    while (at > 0 && (this.serials.get(list[at - 1]) ?? 0) < serial) at--;
    list.splice(at, 0, buffer);
    this.free.set(size, list);
  }

  /** Whether the buffer came from this pool. */
  has(buffer: GPUBuffer): boolean {
    return this.sizes.has(buffer);
  }

  /** Whether the buffer came from this pool and is free now. */
  isFree(buffer: GPUBuffer): boolean {
    const size = this.sizes.get(buffer);
    return size !== undefined && (this.free.get(size)?.includes(buffer) ?? false);
  }

  /**
   * Hands out exactly these free buffers (a replayed call's, which its launches' bind groups
   * name), or none of them and false where one is not free.
   */
  take(buffers: readonly GPUBuffer[]): boolean {
    if (!buffers.every((b) => this.isFree(b))) return false;
    for (const b of buffers) {
      const list = this.free.get(this.sizes.get(b) ?? 0) ?? [];
      list.splice(list.indexOf(b), 1);
    }
    return true;
  }

  /** Destroys every free buffer (those handed out stay valid). */
  trim(): void {
    for (const list of this.free.values()) {
      for (const buffer of list) {
        this.allocatedBytes -= this.sizes.get(buffer) ?? 0;
        buffer.destroy();
      }
    }
    this.free.clear();
  }
}
