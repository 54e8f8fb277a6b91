/**
 * What the denoising loop needs from each model, independent of how the model was made (built
 * from weights, or loaded from an ONNX export) and of the runtime behind it. Tensors are
 * row-major float32 with explicit dims.
 */
import type { SamplerStepOptions } from "../models/sampler-step.js";
import type { ModelRunner, ResidentTensor, RunnerFeed } from "../runtime/types.js";

/** A float32 tensor as the pipelines pass them between models. */
export interface HostTensor {
  readonly data: Float32Array;
  readonly dims: readonly number[];
}

/** The hidden states a pipeline may ask a text encoder for. */
export interface TextEncoderOutputs {
  /** hidden_states[-1] after the final layer norm (B, S, C). */
  readonly lastHiddenState: HostTensor;
  /** The state chosen for clip skip, when asked (B, S, C). */
  readonly skipHiddenState?: HostTensor;
  /** pooler_output (CLIPTextModel) or text_embeds (with projection) (B, P). */
  readonly pooled?: HostTensor;
}

export interface TextEncoderRequest {
  /** hidden_states index from the end (2 = penultimate), or undefined for none. */
  readonly hiddenStateFromEnd?: number;
  /** Apply the final layer norm to that hidden state (SD 1.x/2.x clip skip does, SDXL does not). */
  readonly finalLayerNorm?: boolean;
}

export interface TextEncoderComponent {
  readonly hiddenSize: number;
  readonly layers: number;
  /** `inputIds` is [batch, 77] row-major. */
  encode(inputIds: readonly number[][], request: TextEncoderRequest): Promise<TextEncoderOutputs>;
  release(): Promise<void>;
}

export interface UnetInputs {
  readonly sample: HostTensor;
  /** One timestep per batch row. */
  readonly timestep: Float32Array;
  readonly encoderHiddenStates: HostTensor;
  /** SDXL text_time conditioning. */
  readonly textEmbeds?: HostTensor;
  readonly timeIds?: HostTensor;
}

export interface UnetComponent {
  predict(inputs: UnetInputs): Promise<HostTensor>;
  /**
   * Present where the runtime keeps tensors on its device between runs (onnxruntime-web on
   * WebGPU): the denoising loop can then leave the latents there.
   */
  readonly device?: DeviceUnet;
  release(): Promise<void>;
}

/** A UNet and sampler step that exchange the latents on the device. */
export interface DeviceUnet {
  /** `predict` with the sample on the device or the host; the prediction stays on the device. */
  predict(inputs: DeviceUnetInputs): Promise<ResidentTensor>;
  /** Copies a host tensor to the device. */
  upload(tensor: HostTensor): Promise<ResidentTensor>;
  /** The runner of the sampler-step graph (models/sampler-step.ts) for these options; the same
   * runner for the same options. */
  samplerStep(options: SamplerStepOptions): Promise<ModelRunner>;
}

export interface DeviceUnetInputs extends Omit<UnetInputs, "sample"> {
  readonly sample: RunnerFeed;
}

export interface VaeComponent {
  readonly scalingFactor: number;
  readonly shiftFactor: number;
  /** Latents (unscaled: the caller divides by the scaling factor) to images in [-1, 1], NCHW. */
  decode(latents: HostTensor): Promise<HostTensor>;
  /** Images in [-1, 1] NCHW to the latent distribution's mean and log-variance. */
  encode(images: HostTensor): Promise<{ mean: HostTensor; logvar: HostTensor }>;
  release(): Promise<void>;
}
