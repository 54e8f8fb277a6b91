/**
 * The LoRA sets one pipeline runs: the set it was loaded with, and the sets `generate` calls ask
 * for. Each set's text encoders and UNet are made once and kept while they may be asked for
 * again; the built models behind them are cached on disk under keys that hold each LoRA's hash
 * and weight, so a set seen before is never rebuilt. Beyond the pipeline's own set, the few most
 * recently used sets stay loaded; older ones are released once no call uses them.
 */
import {
  type ApplyLoraOptions,
  applyLoras,
  type LoraApplication,
  type LoraRequest,
} from "../lora/apply-loras.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type { ModelFiles } from "../weights/model-files.js";
import type { AdaptedModels } from "./pipeline-parts.js";

/** How many LoRA sets besides the pipeline's own keep their sessions loaded. */
export const LOADED_LORA_SETS = 2;

type Models = Omit<AdaptedModels, "loras" | "done"> & { release(): Promise<void> };

interface Variant {
  readonly models: Models;
  readonly application: LoraApplication | undefined;
  users: number;
  lastUsed: number;
}

export interface LoraVariants {
  /** The models of the set the pipeline was loaded with. */
  readonly own: AdaptedModels;
  /** The models of another set, made on first use; throws one line for bad LoRAs. */
  withLoras(requests: readonly LoraRequest[]): Promise<AdaptedModels>;
  release(): Promise<void>;
}

export function loraVariants(
  files: ModelFiles,
  family: ModelFamily,
  options: {
    readonly loras?: readonly LoraRequest[];
    readonly onWarning?: (m: string) => void;
    readonly unmatchedError?: string;
  },
  make: (view: ModelFiles) => Models,
): LoraVariants {
  const applyOptions: ApplyLoraOptions = {
    family,
    onWarning: options.onWarning,
    unmatchedError: options.unmatchedError,
  };
  const initial =
    options.loras && options.loras.length > 0
      ? applyLoras(files, options.loras, applyOptions)
      : undefined;
  const ownKey = initial?.key ?? "";
  const own: Variant = {
    models: make(initial?.files ?? files),
    application: initial,
    users: 0,
    lastUsed: Number.POSITIVE_INFINITY,
  };
  const variants = new Map<string, Variant>([[ownKey, own]]);
  let clock = 0;

  const free = (variant: Variant) =>
    variant.models.release().finally(() => variant.application?.close());

  const evict = () => {
    const others = [...variants.entries()].filter(([key]) => key !== ownKey);
    if (others.length <= LOADED_LORA_SETS) return;
    others.sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    let excess = others.length - LOADED_LORA_SETS;
    for (const [key, variant] of others) {
      if (excess === 0) break;
      if (variant.users > 0) continue;
      variants.delete(key);
      free(variant).catch(() => {});
      excess--;
    }
  };

  const view = (variant: Variant, application: LoraApplication | undefined): AdaptedModels => ({
    loras: application?.loras ?? [],
    textEncoders: variant.models.textEncoders,
    unet: (reduction) => variant.models.unet(reduction),
  });

  return {
    own: view(own, initial),
    async withLoras(requests) {
      const application = applyLoras(files, requests, applyOptions);
      let variant = variants.get(application.key);
      if (variant) {
        // The set is loaded already; these files were only opened to identify it.
        application.close();
      } else {
        variant = { models: make(application.files), application, users: 0, lastUsed: 0 };
        variants.set(application.key, variant);
      }
      const used = variant;
      used.users++;
      if (used !== own) used.lastUsed = ++clock;
      evict();
      let finished = false;
      return {
        ...view(used, application),
        done() {
          if (finished) return;
          finished = true;
          used.users--;
          evict();
        },
      };
    },
    async release() {
      for (const variant of variants.values()) await free(variant);
      variants.clear();
    },
  };
}
