import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { summariseProfile } from "../../src/runtime/profile.js";
import { createSession, float32Tensor } from "../../src/runtime/session.js";
import { parseDevice } from "../../src/util/vocabulary.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-prof-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("profiling", () => {
  it("summarises time per operator type and node placement", async () => {
    const g = new GraphBuilder();
    const x = g.input("x", "float32", [2, 3]);
    g.output(g.softmax(g.add(g.mul(x, x), x)), "y", "float32", [2, 3]);
    const session = await createSession(buildModelBytes(g), { profilePrefix: join(work, "p") });
    const feeds = { x: float32Tensor(new Float32Array(6), [2, 3]) };
    await session.run(feeds);
    await session.run(feeds);
    session.endProfiling();
    const [file] = readdirSync(work).filter((f) => f.startsWith("p"));
    const summary = summariseProfile(join(work, file));
    expect(summary.runs).toBe(2);
    expect(summary.timeSource).toBe("host");
    expect(summary.byOpType.map((o) => o.opType).sort()).toEqual(["Add", "Mul", "Softmax"]);
    for (const op of summary.byOpType) {
      expect(op.count).toBe(1);
      expect(op.providers).toEqual(["CPUExecutionProvider"]);
    }
    expect(summary.placement).toEqual({ CPUExecutionProvider: 3 });
  });

  it("sums the GPU timestamps of WebGPU programs when the trace has them", () => {
    // The shape of onnxruntime's WebGPU trace: host "Node" events per kernel call, device "Api"
    // events per GPU program named node&OpType&program, microseconds.
    const node = (name: string, op: string, dur: number, provider = "WebGpuExecutionProvider") => ({
      cat: "Node",
      name: `${name}_kernel_time`,
      dur,
      args: { op_name: op, provider },
    });
    const gpu = (name: string, dur: number) => ({ cat: "Api", pid: -1, name, dur, args: {} });
    const run = (matMulUs: number) => [
      { cat: "Session", name: "model_run", dur: 9000 },
      node("MatMul_1", "MatMul", 30),
      node("Conv_2", "Conv", 20),
      node("Shape_3", "Shape", 5, "CPUExecutionProvider"),
      gpu("MatMul_1&MatMul&MatMul", matMulUs),
      gpu("Conv_2_token_7&Conv&Conv2dMM", 1500),
      gpu("Transpose_token_7&Transpose&Transpose", 500),
    ];
    const trace = [...run(4000), ...run(2000)];
    const path = join(work, "webgpu-trace.json");
    writeFileSync(path, JSON.stringify(trace));
    const summary = summariseProfile(path);
    expect(summary.timeSource).toBe("device");
    expect(summary.runs).toBe(2);
    expect(summary.byOpType).toEqual([
      { opType: "MatMul", totalMs: 3, count: 1, providers: ["WebGpuExecutionProvider"] },
      { opType: "Conv", totalMs: 1.5, count: 1, providers: ["WebGpuExecutionProvider"] },
      // Layout transposes onnxruntime inserted have no host event of their own.
      { opType: "Transpose", totalMs: 0.5, count: 1, providers: ["?"] },
    ]);
    expect(summary.placement).toEqual({ WebGpuExecutionProvider: 2, CPUExecutionProvider: 1 });
  });
});

describe("devices", () => {
  it("parses device names and rejects unknown ones", () => {
    expect(parseDevice("WebGPU")).toBe("webgpu");
    expect(() => parseDevice("tpu")).toThrow(
      'unknown device "tpu"; expected one of cpu, webgpu, cuda, wasm',
    );
  });
});
