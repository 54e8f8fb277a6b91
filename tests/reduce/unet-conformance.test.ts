// Conformance: every ToDo/ToMe variant of the UNet cases, built from the fixture folders with
// the reduction settings the reference arguments describe, within the UNet tolerance.
import { describe, expect, it } from "vitest";
import { parseUnetConfig } from "../../src/configs/unet-config.js";
import { buildUnet } from "../../src/models/unet.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import {
  type ReferenceReductionArgs,
  settingsFromReferenceArgs,
} from "../../src/reduce/options.js";
import { createSession, runFloat32 } from "../../src/runtime/session.js";
import { maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";
import { fixtureComponent } from "../models/component-weights.js";
import { unetCaseFeeds } from "../unet-cases.js";

const TOLERANCE = 1e-4;

interface UnetCase {
  readonly size: string;
  readonly variant: string;
  readonly args: ReferenceReductionArgs | null;
  readonly output: string;
}

const MODELS = ["sd15-tiny", "sd21-tiny", "sdxl-tiny"] as const;

describe.each(MODELS)("UNet %s with token reduction against the reference", (model) => {
  const name = `unet-${model}`;
  const cases = readCaseJson<{ cases: UnetCase[] }>(name).cases.filter((c) => c.args !== null);
  const variants = [...new Set(cases.map((c) => c.variant))];

  it.each(variants)("%s", async (variant) => {
    const ofVariant = cases.filter((c) => c.variant === variant);
    const settings = settingsFromReferenceArgs(ofVariant[0].args!);
    const { config, weights } = fixtureComponent(model, "unet");
    const built = buildUnet(parseUnetConfig(config), weights, { reduction: settings });
    const session = await createSession(buildModelBytes(built.builder));
    const tensors = openCaseTensors(name);
    try {
      for (const c of ofVariant) {
        const feeds = unetCaseFeeds(tensors, c.size);
        const out = await runFloat32(session, feeds);
        const diff = maxAbsDiff(out.out_sample.data, tensors.readFloat32(c.output));
        console.log(`${name} ${c.size} ${variant}: max abs diff ${diff.toExponential(2)}`);
        expect(diff).toBeLessThan(TOLERANCE);
      }
    } finally {
      tensors.close();
      await session.release();
    }
  });
});
