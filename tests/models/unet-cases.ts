// Test helper: runs a built UNet on the baseline cases of cases/unet-<model>.json.

import type { BuiltModel } from "../../src/models/layers.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import { createSession, runFloat32 } from "../../src/runtime/session.js";
import { maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";
import { unetCaseFeeds } from "../unet-cases.js";

interface UnetCaseFile {
  readonly cases: ReadonlyArray<{ size: string; variant: string; output: string }>;
}

export interface CaseResult {
  readonly size: string;
  readonly maxAbsDiff: number;
  /** Largest magnitude in the reference output, for relative bounds. */
  readonly maxReference: number;
}

/** Runs every baseline case of `unet-<model>` through `built`; the timestep is fed as [B]. */
export async function runBaselineCases(model: string, built: BuiltModel): Promise<CaseResult[]> {
  const name = `unet-${model}`;
  const tensors = openCaseTensors(name);
  const session = await createSession(buildModelBytes(built.builder));
  const results: CaseResult[] = [];
  try {
    for (const c of readCaseJson<UnetCaseFile>(name).cases) {
      if (c.variant !== "baseline") continue;
      const feeds = unetCaseFeeds(tensors, c.size);
      const out = await runFloat32(session, feeds);
      const reference = tensors.readFloat32(c.output);
      let maxReference = 0;
      for (const v of reference) maxReference = Math.max(maxReference, Math.abs(v));
      results.push({
        size: c.size,
        maxAbsDiff: maxAbsDiff(out.out_sample.data, reference),
        maxReference,
      });
    }
  } finally {
    tensors.close();
    await session.release();
  }
  return results;
}
