/** A one-line progress bar on stderr: step, it/s and time left. */
export class ProgressBar {
  private readonly tty: boolean;
  /** The first step reported and when: the rate counts from there, so the time spent building
   * models and encoding the prompt before the first step never enters it. */
  private first: { step: number; at: number } | undefined;

  constructor(
    private readonly label: string,
    private readonly stream: Pick<NodeJS.WriteStream, "write" | "isTTY"> = process.stderr,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tty = Boolean(stream.isTTY);
  }

  update(step: number, total: number): void {
    const now = this.now();
    this.first ??= { step, at: now };
    const steps = step - this.first.step;
    const elapsed = (now - this.first.at) / 1000;
    const rate = steps > 0 ? steps / Math.max(elapsed, 1e-9) : Number.NaN;
    const eta = steps > 0 ? (total - step) / Math.max(rate, 1e-9) : Number.NaN;
    const width = 24;
    const filled = Math.round((step / total) * width);
    const bar = `${"#".repeat(filled)}${"-".repeat(width - filled)}`;
    const line = `${this.label} [${bar}] ${step}/${total} ${Number.isFinite(rate) ? rate.toFixed(2) : "?"} it/s, ${formatSeconds(eta)} left`;
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

/** Rows as lines of columns padded to their widest cell, two spaces apart. */
export function table(rows: readonly string[][]): string[] {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) =>
    row
      .map((cell, column) => cell.padEnd(widths[column]))
      .join("  ")
      .trimEnd(),
  );
}
