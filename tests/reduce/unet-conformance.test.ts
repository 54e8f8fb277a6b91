// Conformance: every ToDo/ToMe variant of the UNet cases, built from the fixture folders with
// the reduction settings the reference arguments describe, within the UNet tolerance.
import { describe, expect, it } from "vitest";
import { buildUnet } from "../../src/models/unet.js";
import { parseUnetConfig } from "../../src/models/unet-config.js";
import { buildModelBytes } from "../../src/onnx/model-io.js";
import {
  type ReferenceReductionArgs,
  settingsFromReferenceArgs,
} from "../../src/reduce/options.js";
import {
  createSession,
  float32Tensor,
  type OrtTensor,
  runFloat32,
} from "../../src/runtime/session.js";
import { maxAbsDiff, openCaseTensors, readCaseJson } from "../fixtures.js";
import { fixtureComponent } from "../models/component-weights.js";

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
        const tensor = (key: string): OrtTensor =>
          float32Tensor(
            tensors.readFloat32(`${c.size}.${key}`),
            tensors.info(`${c.size}.${key}`).shape,
          );
        const sample = tensor("sample");
        const t = tensors.readFloat32(`${c.size}.timestep`)[0];
        const feeds: Record<string, OrtTensor> = {
          sample,
          timestep: float32Tensor(new Float32Array(sample.dims[0]).fill(t), [sample.dims[0]]),
          encoder_hidden_states: tensor("encoder_hidden_states"),
        };
        if (tensors.has(`${c.size}.text_embeds`)) {
          feeds.text_embeds = tensor("text_embeds");
          feeds.time_ids = tensor("time_ids");
        }
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
