/**
 * `todo-sd patch`: adds token reduction to a UNet that another tool exported to ONNX. The model
 * is read (with its external data), rewritten in memory by the attention rules, and written
 * through a temporary file, so a refusal or a failure leaves nothing behind.
 */
import { resolve } from "node:path";
import { type ExternalDataMode, readModel, writeModel } from "../onnx/model-io.js";
import type { ModelProto } from "../onnx/proto.js";
import {
  type ReductionOptions,
  type ReductionSettings,
  resolveReduction,
} from "../reduce/options.js";
import { OptionError } from "../util/option-error.js";
import { type ApplyResult, ATTENTION_RULES, applyRules, describeReport } from "./apply-rules.js";
import { unetSignature } from "./unet-levels.js";

export interface PatchOptions {
  /** What to add; `auto` factors need the image size (`width`, `height`). */
  readonly reduction: ReductionOptions | ReductionSettings;
  /** Image size in pixels, for `auto` and for checking the factors fit (static exports give it). */
  readonly width?: number;
  readonly height?: number;
  readonly externalData?: ExternalDataMode;
  /** Receives one line per level patched (the CLI prints them). */
  readonly log?: (line: string) => void;
}

export interface PatchResult extends ApplyResult {
  readonly settings: ReductionSettings;
  readonly files: readonly string[];
}

/**
 * Patches a UNet in memory (the model is edited in place). The architecture for `auto` rules is
 * read off the inputs: text_embeds/time_ids mean SDXL.
 */
export function patchUnet(
  model: ModelProto,
  options: PatchOptions,
  label = "model",
): ApplyResult & { settings: ReductionSettings } {
  const signature = unetSignature(model.graph, label);
  const size =
    options.width !== undefined && options.height !== undefined
      ? { width: options.width, height: options.height }
      : signature.staticSize
        ? { width: signature.staticSize.width * 8, height: signature.staticSize.height * 8 }
        : {};
  const settings = resolveReduction(options.reduction, {
    architecture: signature.textTime ? "sdxl" : "sd1",
    ...size,
  });
  const result = applyRules(model, ATTENTION_RULES, settings, label);
  for (const line of describeReport(result.report)) options.log?.(line);
  return { ...result, settings };
}

/** Reads `inPath`, patches it and writes `outPath`; writes nothing when it refuses or fails. */
export function patchModel(inPath: string, outPath: string, options: PatchOptions): PatchResult {
  if (resolve(inPath) === resolve(outPath))
    throw new OptionError(
      (name) => `${name("outPath")} must name a new file, not the input ${inPath}`,
    );
  const model = readModel(inPath);
  const result = patchUnet(model, options, inPath);
  const files = writeModel(result.model, outPath, options.externalData ?? "auto");
  return { ...result, files };
}
