/**
 * What a loaded model gives the pipeline: its components, tokenizers and the facts of its
 * configs the denoising loop needs. Every model source (a folder, a single file, ONNX exports,
 * the server's files in a browser) produces one of these.
 */
import type { AppliedLora, LoraRequest } from "../lora/apply-loras.js";
import type { ReductionSettings } from "../reduce/options.js";
import type { ClipTokenizer } from "../tokenizers/clip-tokenizer.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type { TextEncoderComponent, UnetComponent, VaeComponent } from "./components.js";
import type { MemoryShape } from "./memory-estimate.js";

/** The models a set of LoRAs changes: the text encoders and the UNet. */
export interface AdaptedModels {
  readonly loras: readonly AppliedLora[];
  readonly textEncoders: readonly TextEncoderComponent[];
  /** The UNet built for the given reduction (undefined: none); implementations cache them. */
  unet(reduction: ReductionSettings | undefined): Promise<UnetComponent>;
  /** Tells the owner that the call using these models is over, so it may free them later. */
  done?(): void;
}

/** What a loaded model gives the pipeline; its own models carry the LoRAs it was loaded with. */
export interface PipelineParts extends Omit<AdaptedModels, "loras" | "done"> {
  readonly family: ModelFamily;
  readonly label: string;
  /** The engine the models run on (absent: onnxruntime). */
  readonly engine?: "kernels" | "onnxruntime";
  readonly tokenizers: readonly ClipTokenizer[];
  /** The LoRAs merged into `textEncoders` and `unet` (none when absent). */
  readonly loras?: readonly AppliedLora[];
  /**
   * The models with another set of LoRAs (checked before anything is built); absent where a
   * source cannot change its LoRAs per call.
   */
  withLoras?(loras: readonly LoraRequest[]): Promise<AdaptedModels>;
  readonly vae: VaeComponent;
  /** The model's own scheduler_config.json (with `_class_name`). */
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  /** model_index.json's force_zeros_for_empty_prompt (SDXL). */
  readonly forceZerosForEmptyPrompt: boolean;
  readonly latentChannels: number;
  /** Spatial downsampling of the VAE (8 for every SD model). */
  readonly vaeScale: number;
  readonly defaultSize: number;
  /** The shapes a memory estimate needs, where the source has configs (see memory-estimate.ts). */
  readonly memoryShape?: MemoryShape;
  release?(): Promise<void>;
}
