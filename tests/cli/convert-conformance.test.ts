// Conformance through files written by `todo-sd convert`: every UNet case of the fixtures (the
// baselines, and every ToDo/ToMe variant with the reference arguments turned into CLI flags),
// run on onnxruntime's CPU backend, within the UNet tolerance.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { ReferenceReductionArgs } from "../../src/reduce/options.js";
import { createSession, runFloat32 } from "../../src/runtime/session.js";
import { fixturePath, maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";
import { unetCaseFeeds } from "../unet-cases.js";
import { runCli, Workspace } from "./helpers.js";

const TOLERANCE = 1e-4;
const ws = new Workspace();
afterAll(() => ws.remove());

interface UnetCase {
  readonly size: string;
  readonly variant: string;
  readonly args: ReferenceReductionArgs | null;
  readonly output: string;
}

/**
 * The command-line flags (DESIGN.md's vocabulary) that express the reference's arguments: only
 * those that take effect, since the command line refuses settings its schedule would ignore.
 */
function flagsFor(args: ReferenceReductionArgs | null): string[] {
  if (!args) return [];
  const flags: string[] = [];
  const switchAt = args.timestep_threshold_switch ?? 0;
  const reference = args.secondary_merge_method ?? "similarity";
  const secondary =
    reference === "similarity" ? "tome" : reference === "downsample" ? "todo" : "none";
  const primary = args.merge_method === "similarity" ? "tome" : "todo";
  const switches = switchAt > 0 && secondary !== primary;
  const uses = (method: string) => primary === method || (switches && secondary === method);
  if (uses("tome")) {
    flags.push("--tome", String(args.ratio), "--tome-level2", String(args.ratio_level_2 ?? 0));
    flags.push("--tome-stride", `${args.sx ?? 2}x${args.sy ?? 2}`);
    if (args.use_rand) flags.push("--tome-random");
  }
  if (uses("todo")) {
    flags.push(
      "--todo",
      String(args.downsample_factor ?? 2),
      "--todo-level2",
      String(args.downsample_factor_level_2 ?? 1),
    );
    // The reference's avg_pool / max_pool are the CLI's avg / max.
    const mode = (args.downsample_method ?? "nearest-exact").replace(/_pool$/, "");
    flags.push("--todo-mode", mode);
  }
  flags.push("--merge-target", args.merge_tokens === "all" ? "all" : "kv");
  flags.push("--todo-stop", String(args.timestep_threshold_stop ?? 0));
  if (switches) flags.push("--todo-switch", String(switchAt), "--todo-secondary", secondary);
  return flags;
}

const MODELS = ["sd15-tiny", "sd21-tiny", "sdxl-tiny"] as const;

describe.each(MODELS)("converted UNet %s against the reference", (model) => {
  const name = `unet-${model}`;
  const cases = readCaseJson<{ cases: UnetCase[] }>(name).cases;
  const variants = [...new Set(cases.map((c) => c.variant))];

  it.each(variants)("%s", async (variant) => {
    const ofVariant = cases.filter((c) => c.variant === variant);
    const out = join(ws.outDir(), "unet.onnx");
    const run = await runCli([
      "convert",
      fixturePath("pipelines", model),
      "--component",
      "unet",
      "-o",
      out,
      ...flagsFor(ofVariant[0].args),
    ]);
    expect(run.code, run.stderr).toBe(0);
    const session = await createSession(out);
    const tensors = openCaseTensors(name);
    try {
      for (const c of ofVariant) {
        const feeds = unetCaseFeeds(tensors, c.size);
        const result = await runFloat32(session, feeds);
        const diff = maxAbsDiff(result.out_sample.data, tensors.readFloat32(c.output));
        console.log(`convert ${name} ${c.size} ${variant}: max abs diff ${diff.toExponential(2)}`);
        expect(diff).toBeLessThan(TOLERANCE);
      }
    } finally {
      tensors.close();
      await session.release();
    }
  });
});
