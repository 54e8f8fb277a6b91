/**
 * An SVG line chart of benchmark results: time per UNet call against image size, one line per
 * method (and per engine, where the rows hold two), on a logarithmic time axis. Small and dependency-free, for BENCHMARKS.md.
 */
import type { UnetBenchRow } from "./unet-bench.js";

const COLORS: Readonly<Record<string, string>> = {
  none: "#444444",
  todo: "#d62728",
  tome: "#1f77b4",
  "todo-single-key": "#ff7f0e",
  off: "#2ca02c",
};

const LABELS: Readonly<Record<string, string>> = {
  none: "baseline",
  todo: "ToDo (auto factor)",
  tome: "ToMe",
  "todo-single-key": "ToDo, one key (limit)",
  off: "ToDo built in, switched off",
};

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function plotBenchSvg(rows: readonly UnetBenchRow[], title: string): string {
  const valid = rows.filter((r) => !r.error && Number.isFinite(r.medianMs));
  if (valid.length === 0) throw new Error("no benchmark results to plot");
  const width = 720;
  const height = 440;
  const margin = { left: 70, right: 190, top: 40, bottom: 50 };
  const sides = [...new Set(valid.map((r) => Math.max(r.width, r.height)))].sort((a, b) => a - b);
  const minMs = Math.min(...valid.map((r) => r.medianMs));
  const maxMs = Math.max(...valid.map((r) => r.medianMs));
  const low = 10 ** Math.floor(Math.log10(minMs));
  const high = 10 ** Math.ceil(Math.log10(maxMs));
  const x = (side: number) =>
    margin.left +
    (width - margin.left - margin.right) *
      (sides.length === 1 ? 0.5 : sides.indexOf(side) / (sides.length - 1));
  const y = (ms: number) =>
    margin.top +
    (height - margin.top - margin.bottom) *
      (1 - (Math.log10(ms) - Math.log10(low)) / (Math.log10(high) - Math.log10(low)));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2 - 80}" y="22" font-size="14">${escapeXml(title)}</text>`,
  ];
  for (let decade = low; decade <= high; decade *= 10) {
    for (const m of [1, 2, 5]) {
      const v = decade * m;
      if (v < low || v > high) continue;
      parts.push(
        `<line x1="${margin.left}" x2="${width - margin.right}" y1="${y(v)}" y2="${y(v)}" stroke="#dddddd"/>`,
      );
      parts.push(`<text x="${margin.left - 8}" y="${y(v) + 4}" text-anchor="end">${v} ms</text>`);
    }
  }
  for (const side of sides) {
    parts.push(
      `<text x="${x(side)}" y="${height - margin.bottom + 18}" text-anchor="middle">${side} px</text>`,
    );
  }
  parts.push(
    `<text x="${(margin.left + width - margin.right) / 2}" y="${height - 12}" text-anchor="middle">image side (square), one UNet call, batch 2</text>`,
  );
  // One line per method, and per engine where the rows come from more than one (onnxruntime's
  // dashed).
  const engines = new Set(valid.map((r) => r.engine ?? "onnxruntime"));
  const seriesOf = (r: UnetBenchRow) =>
    engines.size > 1 ? `${r.engine ?? "onnxruntime"} ${r.method}` : r.method;
  const series = [...new Set(valid.map(seriesOf))];
  for (const [i, key] of series.entries()) {
    const points = valid.filter((r) => seriesOf(r) === key).sort((a, b) => a.width - b.width);
    const { method } = points[0];
    const engine = engines.size > 1 ? (points[0].engine ?? "onnxruntime") : undefined;
    const color = COLORS[method] ?? "#9467bd";
    const dash = engine === "onnxruntime" ? ' stroke-dasharray="6 4"' : "";
    const label = `${engine ? `${engine}: ` : ""}${LABELS[method] ?? method}`;
    const path = points
      .map(
        (r, k) =>
          `${k === 0 ? "M" : "L"}${x(Math.max(r.width, r.height)).toFixed(1)},${y(r.medianMs).toFixed(1)}`,
      )
      .join(" ");
    parts.push(`<path d="${path}" fill="none" stroke="${color}" stroke-width="2"${dash}/>`);
    for (const r of points) {
      parts.push(
        `<circle cx="${x(Math.max(r.width, r.height))}" cy="${y(r.medianMs)}" r="3.5" fill="${color}"><title>${escapeXml(`${engine ? `${engine} ` : ""}${method} ${r.width}x${r.height}: ${r.medianMs.toFixed(1)} ms`)}</title></circle>`,
      );
    }
    const ly = margin.top + 10 + i * 20;
    parts.push(
      `<line x1="${width - margin.right + 15}" x2="${width - margin.right + 40}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dash}/>`,
    );
    parts.push(`<text x="${width - margin.right + 46}" y="${ly + 4}">${escapeXml(label)}</text>`);
  }
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}
