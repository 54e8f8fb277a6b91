/** A one-line progress bar on stderr: step, it/s and time left. */
export class ProgressBar {
  private readonly started = performance.now();
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  update(step: number, total: number): void {
    const elapsed = (performance.now() - this.started) / 1000;
    const rate = step / Math.max(elapsed, 1e-9);
    const eta = (total - step) / Math.max(rate, 1e-9);
    const width = 24;
    const filled = Math.round((step / total) * width);
    const bar = `${"#".repeat(filled)}${"-".repeat(width - filled)}`;
    const line = `${this.label} [${bar}] ${step}/${total} ${rate.toFixed(2)} it/s, ${formatSeconds(eta)} left`;
    if (this.tty) this.stream.write(`\r${line}${step === total ? "\n" : ""}`);
    else this.stream.write(`${line}\n`);
  }
}

export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
}
