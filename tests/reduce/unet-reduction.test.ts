// Token reduction inside the UNet: what changes in the graph, what does not, and when.
import { afterAll, describe, expect, it } from "vitest";
import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { buildUnet } from "../../src/models/unet.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import type { GraphProto, NodeProto } from "../../src/onnx/proto.js";
import {
  parseReductionOptions,
  type ReductionSettings,
  resolveReduction,
  settingsFromReferenceArgs,
} from "../../src/reduce/options.js";
import {
  createSession,
  float32Tensor,
  type OrtSession,
  runFloat32,
} from "../../src/runtime/session.js";
import { maxAbsDiff, openCaseTensors } from "../fixtures.js";
import { fixtureComponent } from "../models/component-weights.js";
import { allNodes } from "./helpers.js";

function build(settings?: ReductionSettings) {
  const { config, weights } = fixtureComponent("sd15-tiny", "unet");
  return buildUnet(parseUnetConfig(config), weights, { reduction: settings });
}

const todo2 = settingsFromReferenceArgs({
  downsample_method: "nearest",
  downsample_factor: 2,
  timestep_threshold_switch: 0,
});

/**
 * A name-free fingerprint of how `value` is computed: op types, attributes and the fingerprints
 * of the inputs, down to graph inputs, initializers (by name) and `leaves`.
 */
function fingerprint(
  graph: GraphProto,
  value: string,
  leaves: ReadonlySet<string>,
  memo = new Map<string, string>(),
): string {
  const known = memo.get(value);
  if (known) return known;
  let result: string;
  const producer = graph.node.find((n) => n.output.includes(value));
  if (leaves.has(value)) result = "<leaf>";
  else if (!producer)
    result = value; // graph input or initializer
  else {
    const attrs = (producer.attribute ?? [])
      .map((a) => `${a.name}=${a.i ?? ""}${a.f ?? ""}${a.ints?.join(",") ?? ""}`)
      .join(";");
    const inputs = producer.input.map((i) => fingerprint(graph, i, leaves, memo));
    result = `${producer.opType}#${producer.output.indexOf(value)}[${attrs}](${inputs.join(", ")})`;
  }
  memo.set(value, result);
  return result;
}

/** Per transformer block: the fingerprint of its cross-attention output from its token input. */
function crossAttentions(graph: GraphProto): Map<string, string> {
  const out = new Map<string, string>();
  for (const node of graph.node) {
    const bias = node.input.find((i) => /\.attn2\.to_out\.0\.bias$/.test(i));
    if (!bias) continue;
    const block = bias.replace(/\.attn2\.to_out\.0\.bias$/, "");
    const query = graph.node.find((n) => n.input.includes(`${block}.attn2.to_q.weight`))!;
    const tokensIn = query.input.find((i) => !i.endsWith(".weight"))!;
    out.set(block, fingerprint(graph, node.output[0], new Set([tokensIn])));
  }
  return out;
}

function opCounts(nodes: readonly NodeProto[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const n of nodes) counts.set(n.opType, (counts.get(n.opType) ?? 0) + 1);
  return counts;
}

describe("token reduction in the UNet graph", () => {
  const baseline = build().builder.toGraphProto();

  for (const [label, settings] of [
    ["ToDo keys/values", todo2],
    [
      "ToDo all",
      settingsFromReferenceArgs({
        merge_tokens: "all",
        downsample_method: "bicubic",
        downsample_factor: 2,
        downsample_factor_level_2: 2,
        timestep_threshold_switch: 0,
      }),
    ],
    [
      "ToMe all with a switch",
      settingsFromReferenceArgs({
        merge_tokens: "all",
        merge_method: "similarity",
        use_rand: true,
        timestep_threshold_switch: 0.5,
        secondary_merge_method: "downsample",
      }),
    ],
  ] as const) {
    it(`leaves cross-attention untouched (${label})`, () => {
      const reduced = build(settings).builder.toGraphProto();
      const before = crossAttentions(baseline);
      const after = crossAttentions(reduced);
      expect(before.size).toBe(16);
      expect([...after.keys()]).toEqual([...before.keys()]);
      for (const [block, print] of before) expect(after.get(block)).toBe(print);
      // No reduction node reads a cross-attention weight: neither the nodes inside If branches nor,
      // for the If-free nearest path, the strided Slices and what feeds them.
      const inBranches = allNodes(reduced.node).filter((n) => !reduced.node.includes(n));
      const slices = reduced.node.filter((n) => n.opType === "Slice" && n.input.length === 5);
      expect(inBranches.length + slices.length).toBeGreaterThan(0);
      expect(
        [...inBranches, ...slices].some((n) => n.input.some((i) => i.includes(".attn2."))),
      ).toBe(false);
    });
  }

  it("reduces nearest keys/values with one strided Slice per site and no If", () => {
    const reduced = build(todo2).builder.toGraphProto();
    const added = opCounts(reduced.node);
    for (const [op, count] of opCounts(baseline.node)) added.set(op, (added.get(op) ?? 0) - count);
    // sd15-tiny has 5 self-attentions at level 1 (2 down, 3 up).
    expect(added.get("If") ?? 0).toBe(0);
    expect(added.get("Slice")).toBe(5);
    expect(added.get("Gather")).toBe(1); // timestep[0], shared by the sites
    expect(added.get("Greater")).toBe(1);
    expect(added.get("Resize") ?? 0).toBe(0);
    const strided = reduced.node.filter((n) => n.opType === "Slice" && n.input.length === 5);
    expect(strided).toHaveLength(5);
  });

  it("puts other modes inside Ifs on the shared timestep test, one per site", () => {
    const avg = settingsFromReferenceArgs({
      downsample_method: "avg_pool",
      downsample_factor: 2,
      downsample_factor_level_2: 1,
    });
    const reduced = build(avg).builder.toGraphProto();
    const added = opCounts(reduced.node);
    for (const [op, count] of opCounts(baseline.node)) added.set(op, (added.get(op) ?? 0) - count);
    // Every top-level If hangs on the one shared timestep test; the pooling is inside them.
    expect(added.get("If")).toBeGreaterThanOrEqual(5);
    expect(added.get("ReduceMean") ?? 0).toBe(0);
    const timestepTest = reduced.node.find((n) => n.name === "TimestepAbove")!.output[0];
    const ifs = reduced.node.filter((n) => n.opType === "If");
    expect(ifs.every((n) => n.input[0] === timestepTest)).toBe(true);
  });

  it("builds the baseline graph when no level reduces anything", () => {
    const off = resolveReduction(parseReductionOptions({ factor: 1 }), { architecture: "sd1" });
    expect(build(off).builder.toGraphProto().node.length).toBe(baseline.node.length);
    expect(build(undefined).builder.toGraphProto().node.length).toBe(baseline.node.length);
  });
});

describe("per-step control inside one model", () => {
  const cases = openCaseTensors("unet-sd15-tiny");
  const sample = cases.readFloat32("16x16.sample");
  const context = cases.readFloat32("16x16.encoder_hidden_states");
  const sessions = new Map<string, Promise<OrtSession>>();
  afterAll(async () => {
    cases.close();
    for (const s of sessions.values()) await (await s).release();
  });
  const session = (label: string, settings?: ReductionSettings) => {
    let s = sessions.get(label);
    if (!s) {
      s = createSession(buildModelBytes(build(settings).builder));
      sessions.set(label, s);
    }
    return s;
  };
  const run = async (label: string, settings: ReductionSettings | undefined, t: number) => {
    const out = await runFloat32(await session(label, settings), {
      sample: float32Tensor(sample, [2, 4, 16, 16]),
      timestep: float32Tensor(Float32Array.of(t, t), [2]),
      encoder_hidden_states: float32Tensor(context, [2, 77, 16]),
    });
    return out.out_sample.data;
  };
  const stop = settingsFromReferenceArgs({
    downsample_method: "nearest",
    downsample_factor: 2,
    timestep_threshold_stop: 0.8,
    timestep_threshold_switch: 0,
  });
  const justAbove800 = new Float32Array([800]);
  new Uint32Array(justAbove800.buffer)[0] += 1;

  it("reduces nothing once t/1000 <= stop, and reduces above it", async () => {
    for (const t of [0, 500, 799, 800]) {
      const diff = maxAbsDiff(await run("stop", stop, t), await run("baseline", undefined, t));
      expect(diff, `t=${t}`).toBeLessThanOrEqual(1e-6);
    }
    for (const t of [justAbove800[0], 801, 999]) {
      const reduced = await run("stop", stop, t);
      expect(maxAbsDiff(reduced, await run("baseline", undefined, t)), `t=${t}`).toBeGreaterThan(
        1e-3,
      );
      expect(maxAbsDiff(reduced, await run("todo2", todo2, t)), `t=${t}`).toBeLessThanOrEqual(1e-6);
    }
  });

  it("gives the baseline at t = 0 even with the default stop of 0, as the reference", async () => {
    expect(
      maxAbsDiff(await run("todo2", todo2, 0), await run("baseline", undefined, 0)),
    ).toBeLessThanOrEqual(1e-6);
    expect(
      maxAbsDiff(await run("todo2", todo2, 1), await run("baseline", undefined, 1)),
    ).toBeGreaterThan(1e-3);
  });

  it("switches to the secondary method once t/1000 <= switch", async () => {
    const switching = settingsFromReferenceArgs({
      downsample_method: "nearest",
      downsample_factor: 2,
      timestep_threshold_switch: 0.8,
      secondary_merge_method: "similarity",
      use_rand: false,
    });
    const tome = settingsFromReferenceArgs({
      merge_method: "similarity",
      use_rand: false,
      timestep_threshold_switch: 0,
    });
    for (const t of [900, justAbove800[0]])
      expect(
        maxAbsDiff(await run("switch", switching, t), await run("todo2", todo2, t)),
        `t=${t}`,
      ).toBeLessThanOrEqual(1e-6);
    for (const t of [800, 300]) {
      const secondary = await run("switch", switching, t);
      expect(maxAbsDiff(secondary, await run("tome", tome, t)), `t=${t}`).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(secondary, await run("baseline", undefined, t)), `t=${t}`).toBeGreaterThan(
        1e-3,
      );
    }
    expect(
      maxAbsDiff(await run("switch", switching, 0), await run("baseline", undefined, 0)),
    ).toBeLessThanOrEqual(1e-6);
  });

  it("runs grids that the factor does not divide (20x12 latents: 20x12 by 3, 10x6 by 2)", async () => {
    const uneven = resolveReduction(parseReductionOptions({ factor: 3, factorLevel2: 2 }), {
      architecture: "sd1",
    });
    const run20x12 = async (label: string, settings?: ReductionSettings) => {
      const noise = new Float32Array(2 * 4 * 20 * 12).map((_, i) => Math.sin(i * 0.37));
      const out = await runFloat32(await session(label, settings), {
        sample: float32Tensor(noise, [2, 4, 20, 12]),
        timestep: float32Tensor(Float32Array.of(700, 700), [2]),
        encoder_hidden_states: float32Tensor(context, [2, 77, 16]),
      });
      return out.out_sample;
    };
    const reduced = await run20x12("uneven", uneven);
    expect(reduced.dims).toEqual([2, 4, 20, 12]);
    expect(reduced.data.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(reduced.data, (await run20x12("baseline")).data)).toBeGreaterThan(1e-3);
  });
});

describe("float16 models", () => {
  it.each([
    ["nearest", "downsample", "keys/values"],
    ["bicubic", "downsample", "all"],
    ["nearest", "similarity", "all"],
  ] as const)("run %s %s on %s and stay close to float32", async (mode, method, target) => {
    const { config, weights } = fixtureComponent("sd15-tiny", "unet");
    const settings = settingsFromReferenceArgs({
      downsample_method: mode,
      merge_method: method,
      merge_tokens: target,
      downsample_factor: 2,
      use_rand: true,
      timestep_threshold_switch: 0,
    });
    const cases = openCaseTensors("unet-sd15-tiny");
    const feeds = {
      sample: float32Tensor(cases.readFloat32("24x16.sample"), [2, 4, 24, 16]),
      timestep: float32Tensor(Float32Array.of(700, 700), [2]),
      encoder_hidden_states: float32Tensor(
        cases.readFloat32("24x16.encoder_hidden_states"),
        [2, 77, 16],
      ),
    };
    cases.close();
    const outputs: Float32Array[] = [];
    for (const dtype of ["float32", "float16"] as const) {
      const built = buildUnet(parseUnetConfig(config), weights, { reduction: settings, dtype });
      const session = await createSession(buildModelBytes(built.builder));
      outputs.push((await runFloat32(session, feeds)).out_sample.data);
      await session.release();
    }
    const scale = outputs[0].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(maxAbsDiff(outputs[0], outputs[1]) / scale).toBeLessThan(0.02);
  });
});
