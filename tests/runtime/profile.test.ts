import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GraphBuilder } from "../../src/onnx/builder.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { parseDevice } from "../../src/runtime/devices.js";
import { summariseProfile } from "../../src/runtime/profile.js";
import { createSession, float32Tensor } from "../../src/runtime/session.js";

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
    const [file] = readdirSync(work);
    const summary = summariseProfile(join(work, file));
    expect(summary.runs).toBe(2);
    expect(summary.byOpType.map((o) => o.opType).sort()).toEqual(["Add", "Mul", "Softmax"]);
    for (const op of summary.byOpType) {
      expect(op.count).toBe(1);
      expect(op.providers).toEqual(["CPUExecutionProvider"]);
    }
    expect(summary.placement).toEqual({ CPUExecutionProvider: 3 });
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
