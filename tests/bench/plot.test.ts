import { describe, expect, it } from "vitest";
import { plotBenchSvg } from "../../src/bench/plot.js";
import type { UnetBenchRow } from "../../src/bench/unet-bench.js";

function row(
  method: UnetBenchRow["method"],
  side: number,
  ms: number,
  error?: string,
): UnetBenchRow {
  return {
    model: "builtin:sd15",
    device: "webgpu",
    dtype: "float16",
    width: side,
    height: side,
    batch: 2,
    method,
    reduction: "-",
    medianMs: ms,
    minMs: ms,
    itPerSecond: 1000 / ms,
    loadMs: 0,
    peakRssMb: 0,
    error,
  };
}

describe("plotBenchSvg", () => {
  it("draws one line per method with a point per size, on a log time axis", () => {
    const svg = plotBenchSvg(
      [
        row("none", 512, 114),
        row("none", 1024, 480),
        row("todo", 512, 114),
        row("todo", 1024, 364),
        row("tome", 1024, 0, "failed"),
      ],
      "SD 1.5 on H200",
    );
    expect(svg.startsWith("<svg")).toBe(true);
    expect(svg.match(/<path /g)).toHaveLength(2); // the failed ToMe row is left out
    expect(svg.match(/<circle /g)).toHaveLength(4);
    expect(svg).toContain("baseline");
    expect(svg).toContain("ToDo (auto factor)");
    expect(svg).toContain("SD 1.5 on H200");
    expect(svg).toContain(">100 ms<");
    expect(svg).toContain(">1000 ms<");
    expect(svg).toContain("todo 1024x1024: 364.0 ms");
  });

  it("refuses to plot nothing", () => {
    expect(() => plotBenchSvg([row("none", 512, 0, "failed")], "t")).toThrow(
      "no benchmark results to plot",
    );
  });

  it("draws a line per engine and method where the rows come from both engines", () => {
    const both = [
      { ...row("none", 512, 79), engine: "kernels" as const },
      { ...row("none", 1024, 256), engine: "kernels" as const },
      { ...row("none", 512, 116), engine: "onnxruntime" as const },
      { ...row("none", 1024, 478), engine: "onnxruntime" as const },
    ];
    const svg = plotBenchSvg(both, "engines");
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain(">kernels: baseline<");
    expect(svg).toContain(">onnxruntime: baseline<");
    expect(svg.match(/stroke-dasharray/g)).toHaveLength(2); // onnxruntime's line and its legend
    expect(svg).toContain("kernels none 1024x1024: 256.0 ms");
  });
});
