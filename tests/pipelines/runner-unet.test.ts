// The UNet over a runner that can keep inputs on its device: the text conditioning is uploaded
// once per generation and reused on every step; only the latents are fed from the host.
import { describe, expect, it } from "vitest";
import { RunnerUnet } from "../../src/pipelines/runner-components.js";
import type {
  ModelRunner,
  ResidentTensor,
  RunnerFeed,
  RunnerTensor,
} from "../../src/runtime/types.js";

/** A runner that records its uploads, disposals and the feeds of each run. */
function fakeRunner(canUpload: boolean) {
  const uploads: number[][] = [];
  const disposed: number[] = [];
  const runs: Record<string, RunnerFeed>[] = [];
  const runner: ModelRunner = {
    inputNames: ["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
    outputNames: ["out_sample"],
    async run(feeds) {
      runs.push({ ...feeds });
      const sample = feeds.sample as Extract<RunnerTensor, { type: "float32" }>;
      return {
        out_sample: { type: "float32", data: sample.data.map((v) => v * 2), dims: sample.dims },
      };
    },
    async release() {},
    ...(canUpload
      ? {
          async upload(tensor): Promise<ResidentTensor> {
            const id = uploads.length;
            uploads.push(Array.from(tensor.data));
            return {
              type: "resident",
              dims: tensor.dims,
              handle: id,
              read: async () => Float32Array.from(uploads[id]),
              dispose: () => disposed.push(id),
            };
          },
        }
      : {}),
  };
  return { runner, uploads, disposed, runs };
}

const host = (values: number[], dims: number[]) => ({ data: Float32Array.from(values), dims });

describe("RunnerUnet", () => {
  it("uploads each conditioning tensor once and reuses it on every step", async () => {
    const { runner, uploads, disposed, runs } = fakeRunner(true);
    const unet = new RunnerUnet(runner);
    const encoderHiddenStates = host([1, 2, 3, 4], [2, 1, 2]);
    const textEmbeds = host([5, 6], [2, 1]);
    const timeIds = host([7, 8], [2, 1]);
    for (let step = 0; step < 3; step++) {
      const out = await unet.predict({
        sample: host([step, step], [2, 1]),
        timestep: Float32Array.from([999, 999]),
        encoderHiddenStates,
        textEmbeds,
        timeIds,
      });
      expect(Array.from(out.data)).toEqual([2 * step, 2 * step]);
    }
    expect(uploads).toEqual([
      [1, 2, 3, 4],
      [5, 6],
      [7, 8],
    ]);
    for (const feeds of runs) {
      expect(feeds.encoder_hidden_states).toMatchObject({ type: "resident", handle: 0 });
      expect(feeds.text_embeds).toMatchObject({ type: "resident", handle: 1 });
      expect(feeds.time_ids).toMatchObject({ type: "resident", handle: 2 });
      expect(feeds.sample.type).toBe("float32");
    }

    // A new generation's conditioning replaces the old copy, which is disposed.
    await unet.predict({
      sample: host([1, 1], [2, 1]),
      timestep: Float32Array.from([1, 1]),
      encoderHiddenStates: host([9, 9, 9, 9], [2, 1, 2]),
    });
    expect(uploads).toHaveLength(4);
    expect(disposed).toEqual([0]);
    expect(runs[3].encoder_hidden_states).toMatchObject({ type: "resident", handle: 3 });

    await unet.release();
    expect(disposed.sort()).toEqual([0, 1, 2, 3]);
  });

  it("feeds host tensors to runners that cannot keep inputs on a device", async () => {
    const { runner, runs } = fakeRunner(false);
    const unet = new RunnerUnet(runner);
    const encoderHiddenStates = host([1, 2], [1, 1, 2]);
    await unet.predict({
      sample: host([1], [1, 1]),
      timestep: Float32Array.from([5]),
      encoderHiddenStates,
    });
    expect(runs[0].encoder_hidden_states).toEqual({
      type: "float32",
      data: encoderHiddenStates.data,
      dims: [1, 1, 2],
    });
  });
});
