// Shared helpers for the patch tests: fixture UNet cases run through a model, graph summaries.

import { readFileSync } from "node:fs";
import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { buildUnet, type UnetBuildOptions } from "../../src/models/unet.js";
import { buildModelBytes, readModel } from "../../src/onnx/model-io.js";
import {
  decodeModel,
  encodeModel,
  type GraphProto,
  type ModelProto,
  type NodeProto,
} from "../../src/onnx/proto.js";
import type { ReferenceReductionArgs } from "../../src/reduce/options.js";
import { createSession, type OrtTensor, runFloat32 } from "../../src/runtime/session.js";
import { fixturePath, maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";
import { fixtureComponent } from "../models/component-weights.js";
import { unetCaseFeeds } from "../unet-cases.js";

export interface UnetCase {
  readonly size: string;
  readonly variant: string;
  readonly args: ReferenceReductionArgs | null;
  readonly output: string;
}

export function unetCases(model: string): UnetCase[] {
  return readCaseJson<{ cases: UnetCase[] }>(`unet-${model}`).cases;
}

/** The exports hold their weights in one file each; decode a fresh copy per test. */
const exportBytes = new Map<string, Uint8Array>();
export function readExport(relative: string): ModelProto {
  let bytes = exportBytes.get(relative);
  if (!bytes) {
    bytes = encodeModel(readModel(fixturePath(relative)));
    exportBytes.set(relative, bytes);
  }
  return decodeModel(bytes, relative);
}

const builtBytes = new Map<string, Uint8Array>();
/** This project's UNet built from the fixture folder (cached per model and options). */
export function builtUnet(model: string, options: UnetBuildOptions = {}): ModelProto {
  const key = `${model}:${JSON.stringify(options)}`;
  let bytes = builtBytes.get(key);
  if (!bytes) {
    const { config, weights } = fixtureComponent(model, "unet");
    bytes = buildModelBytes(buildUnet(parseUnetConfig(config), weights, options).builder);
    builtBytes.set(key, bytes);
  }
  return decodeModel(bytes, `built ${model}`);
}

export interface UnetFeeds {
  readonly sample: Float32Array;
  readonly dims: readonly number[];
}

/** Runs `model` on the cases of `unet-<model>` (one size each) and returns max abs diffs. */
export async function runCases(
  model: ModelProto,
  fixtureModel: string,
  cases: readonly UnetCase[],
): Promise<Array<{ size: string; variant: string; diff: number }>> {
  const tensors = openCaseTensors(`unet-${fixtureModel}`);
  const session = await createSession(encodeModel(model));
  const out: Array<{ size: string; variant: string; diff: number }> = [];
  try {
    for (const c of cases) {
      const result = await runSession(session, unetCaseFeeds(tensors, c.size));
      out.push({
        size: c.size,
        variant: c.variant,
        diff: maxAbsDiff(result, tensors.readFloat32(c.output)),
      });
    }
  } finally {
    tensors.close();
    await session.release();
  }
  return out;
}

export async function runSession(
  session: Awaited<ReturnType<typeof createSession>>,
  feeds: Record<string, OrtTensor>,
): Promise<Float32Array> {
  const result = await runFloat32(session, feeds);
  return result.out_sample.data;
}

/** Every node of a graph and its subgraphs. */
export function allNodes(graph: GraphProto): NodeProto[] {
  const out: NodeProto[] = [];
  for (const node of graph.node) {
    out.push(node);
    for (const a of node.attribute ?? []) {
      if (a.g) out.push(...allNodes(a.g));
      for (const g of a.graphs ?? []) out.push(...allNodes(g));
    }
  }
  return out;
}

export function opCounts(graph: GraphProto): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const node of allNodes(graph)) counts[node.opType] = (counts[node.opType] ?? 0) + 1;
  return counts;
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}
