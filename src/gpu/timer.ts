/**
 * GPU timestamps around compute passes (the `timestamp-query` feature): the time the GPU itself
 * spent, without the host's submission and readback. Dawn rounds timestamps unless its
 * `timestamp_quantization` toggle is off (dawnToggles({ bench: true })).
 */

export class GpuTimer {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuffer: GPUBuffer;
  private readonly readBuffer: GPUBuffer;
  private readonly capacity: number;
  private labels: string[] = [];

  constructor(device: GPUDevice, passes = 64) {
    this.capacity = passes;
    this.querySet = device.createQuerySet({ type: "timestamp", count: 2 * passes });
    this.resolveBuffer = device.createBuffer({
      size: 16 * passes,
      usage: 0x0200 | 0x0004, // QUERY_RESOLVE | COPY_SRC
    });
    this.readBuffer = device.createBuffer({ size: 16 * passes, usage: 0x0001 | 0x0008 });
  }

  /** Timestamp writes for the next pass, recorded under `label`. */
  pass(label: string): GPUComputePassTimestampWrites {
    if (this.labels.length >= this.capacity)
      throw new Error(`GpuTimer holds ${this.capacity} passes; read() before timing more`);
    const index = this.labels.length;
    this.labels.push(label);
    return {
      querySet: this.querySet,
      beginningOfPassWriteIndex: 2 * index,
      endOfPassWriteIndex: 2 * index + 1,
    };
  }

  /**
   * Resolves the timestamps of the passes recorded since the last read, after the encoder that
   * holds them (pass it here, before it is finished) has been submitted.
   */
  resolve(encoder: GPUCommandEncoder): void {
    const count = 2 * this.labels.length;
    if (count === 0) return;
    encoder.resolveQuerySet(this.querySet, 0, count, this.resolveBuffer, 0);
    encoder.copyBufferToBuffer(this.resolveBuffer, 0, this.readBuffer, 0, 8 * count);
  }

  /** Whether every pass this timer holds is taken: no further pass can be timed before read(). */
  get full(): boolean {
    return this.labels.length >= this.capacity;
  }

  /** Milliseconds per recorded pass, in order; clears the record. */
  async read(): Promise<{ label: string; ms: number }[]> {
    return (await this.readSpans()).map(({ label, startMs, endMs }) => ({
      label,
      ms: endMs - startMs,
    }));
  }

  /**
   * Each recorded pass's start and end on the GPU's clock, in ms after the first pass started
   * (so the gaps between passes show too); clears the record.
   */
  async readSpans(): Promise<{ label: string; startMs: number; endMs: number }[]> {
    const labels = this.labels;
    this.labels = [];
    if (labels.length === 0) return [];
    await this.readBuffer.mapAsync(0x0001, 0, 16 * labels.length);
    const stamps = new BigInt64Array(
      this.readBuffer.getMappedRange(0, 16 * labels.length).slice(0),
    );
    this.readBuffer.unmap();
    const origin = stamps[0];
    return labels.map((label, i) => ({
      label,
      startMs: Number(stamps[2 * i] - origin) / 1e6,
      endMs: Number(stamps[2 * i + 1] - origin) / 1e6,
    }));
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolveBuffer.destroy();
    this.readBuffer.destroy();
  }
}
