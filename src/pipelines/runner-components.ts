/**
 * Pipeline components over model runners (see runtime/types.ts), shared by every way a model
 * is obtained (built from weights or loaded from an export) and by Node and the browser.
 */
import { INPUT_IDS, POOLER_OUTPUT, TEXT_EMBEDS } from "../models/clip-text.js";
import type { SamplerStepOptions } from "../models/sampler-step.js";
import { UNET_INPUTS, UNET_OUTPUT } from "../models/unet.js";
import { VAE_DECODER_IO, VAE_ENCODER_IO } from "../models/vae.js";
import {
  float32,
  floatOutput,
  int64,
  type ModelRunner,
  type ResidentTensor,
  type RunnerFeed,
} from "../runtime/types.js";
import { PromiseMemo } from "../util/promise-memo.js";
import type {
  DeviceUnet,
  DeviceUnetInputs,
  HostTensor,
  TextEncoderComponent,
  TextEncoderOutputs,
  TextEncoderRequest,
  UnetComponent,
  UnetInputs,
  VaeComponent,
} from "./components.js";

/** Graph I/O names of the models this toolkit builds (ONNX exports are rewritten to match). */
export const MODEL_IO = Object.freeze({
  textEncoder: {
    input: INPUT_IDS,
    last: "last_hidden_state",
    skip: "skip_hidden_state",
    pooled: [POOLER_OUTPUT, TEXT_EMBEDS],
  },
  unet: { ...UNET_INPUTS, output: UNET_OUTPUT },
  vaeDecoder: VAE_DECODER_IO,
  vaeEncoder: VAE_ENCODER_IO,
});

function idsTensor(inputIds: readonly number[][]) {
  const batch = inputIds.length;
  const length = inputIds[0].length;
  const data = new BigInt64Array(batch * length);
  for (let b = 0; b < batch; b++)
    for (let i = 0; i < length; i++) data[b * length + i] = BigInt(inputIds[b][i]);
  return int64(data, [batch, length]);
}

/**
 * A text encoder whose graph depends on the request (which hidden state clip skip needs): one
 * runner per distinct request, made on first use by `runnerFor`.
 */
export class RunnerTextEncoder implements TextEncoderComponent {
  private readonly runners = new PromiseMemo<string, ModelRunner>();

  constructor(
    readonly hiddenSize: number,
    readonly layers: number,
    private readonly runnerFor: (request: TextEncoderRequest) => Promise<ModelRunner>,
  ) {}

  async encode(
    inputIds: readonly number[][],
    request: TextEncoderRequest,
  ): Promise<TextEncoderOutputs> {
    const key = `${request.hiddenStateFromEnd ?? 0}:${request.finalLayerNorm ? 1 : 0}`;
    const session = await this.runners.get(key, () => this.runnerFor(request));
    const out = await session.run({ [MODEL_IO.textEncoder.input]: idsTensor(inputIds) });
    const pooledName = MODEL_IO.textEncoder.pooled.find((n) => n in out);
    return {
      lastHiddenState: floatOutput(out, MODEL_IO.textEncoder.last),
      skipHiddenState: request.hiddenStateFromEnd
        ? floatOutput(out, MODEL_IO.textEncoder.skip)
        : undefined,
      pooled: pooledName ? floatOutput(out, pooledName) : undefined,
    };
  }

  async release(): Promise<void> {
    await this.runners.releaseAll((runner) => runner.release());
  }
}

/**
 * A UNet over a runner. The text conditioning (hidden states and SDXL's pooled embeddings and
 * time ids) is the same tensor on every step of a generation: where the runner can keep inputs
 * on its device (`upload`), it is copied there once, on the first step, and reused until the
 * pipeline passes a different tensor; only the latents travel on each step.
 */
export class RunnerUnet implements UnetComponent {
  /**
   * `samplerStep` gives the runner of a sampler-step graph; with it, a runner that can keep
   * tensors on its device (`upload` and `runOnDevice`) offers `device`, a loop whose latents
   * stay there.
   */
  constructor(
    private readonly runner: ModelRunner,
    samplerStep?: (options: SamplerStepOptions) => Promise<ModelRunner>,
  ) {
    const { upload, runOnDevice } = runner;
    if (samplerStep && upload && runOnDevice) {
      const io = MODEL_IO.unet;
      this.device = {
        predict: async (inputs) => {
          const out = (await runOnDevice.call(runner, await this.feeds(inputs), [io.output]))[
            io.output
          ];
          if (out?.type !== "resident") {
            throw new Error(
              `the UNet's output "${io.output}" did not stay on the device (got ${out?.type ?? "nothing"})`,
            );
          }
          return out;
        },
        upload: (tensor) => upload.call(runner, float32(tensor.data, tensor.dims)),
        samplerStep,
      };
    }
  }

  readonly device?: DeviceUnet;

  /** Device copies of conditioning tensors, by input name, with the host tensor they copy. */
  private readonly resident = new Map<string, { source: HostTensor; tensor: ResidentTensor }>();

  private async conditioning(name: string, tensor: HostTensor): Promise<RunnerFeed> {
    if (!this.runner.upload) return float32(tensor.data, tensor.dims);
    const kept = this.resident.get(name);
    if (kept?.source === tensor) return kept.tensor;
    kept?.tensor.dispose();
    this.resident.delete(name);
    const uploaded = await this.runner.upload({
      type: "float32",
      data: tensor.data,
      dims: tensor.dims,
    });
    this.resident.set(name, { source: tensor, tensor: uploaded });
    return uploaded;
  }

  async predict(inputs: UnetInputs): Promise<HostTensor> {
    const feeds = await this.feeds({
      ...inputs,
      sample: float32(inputs.sample.data, inputs.sample.dims),
    });
    return floatOutput(await this.runner.run(feeds), MODEL_IO.unet.output);
  }

  private async feeds(inputs: DeviceUnetInputs): Promise<Record<string, RunnerFeed>> {
    const io = MODEL_IO.unet;
    const feeds: Record<string, RunnerFeed> = {
      [io.sample]: inputs.sample,
      [io.timestep]: float32(inputs.timestep, [inputs.timestep.length]),
      [io.encoderHiddenStates]: await this.conditioning(
        io.encoderHiddenStates,
        inputs.encoderHiddenStates,
      ),
    };
    if (inputs.textEmbeds)
      feeds[io.textEmbeds] = await this.conditioning(io.textEmbeds, inputs.textEmbeds);
    if (inputs.timeIds) feeds[io.timeIds] = await this.conditioning(io.timeIds, inputs.timeIds);
    return feeds;
  }

  release(): Promise<void> {
    for (const { tensor } of this.resident.values()) tensor.dispose();
    this.resident.clear();
    return this.runner.release();
  }
}

export class RunnerVae implements VaeComponent {
  constructor(
    readonly scalingFactor: number,
    readonly shiftFactor: number,
    private readonly decoder: () => Promise<ModelRunner>,
    private readonly encoder: () => Promise<ModelRunner>,
  ) {}

  private decoderRunner?: Promise<ModelRunner>;
  private encoderRunner?: Promise<ModelRunner>;

  async decode(latents: HostTensor): Promise<HostTensor> {
    this.decoderRunner ??= this.decoder();
    const io = MODEL_IO.vaeDecoder;
    const out = await (await this.decoderRunner).run({
      [io.input]: float32(latents.data, latents.dims),
    });
    return floatOutput(out, io.output);
  }

  async encode(images: HostTensor): Promise<{ mean: HostTensor; logvar: HostTensor }> {
    this.encoderRunner ??= this.encoder();
    const io = MODEL_IO.vaeEncoder;
    const out = await (await this.encoderRunner).run({
      [io.input]: float32(images.data, images.dims),
    });
    return { mean: floatOutput(out, io.mean), logvar: floatOutput(out, io.logvar) };
  }

  async release(): Promise<void> {
    for (const runner of [this.decoderRunner, this.encoderRunner])
      if (runner) await (await runner).release();
    this.decoderRunner = undefined;
    this.encoderRunner = undefined;
  }
}
