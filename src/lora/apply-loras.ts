/**
 * A set of LoRAs, each with its own weight, applied to opened model weights: the files are
 * opened and every key checked against the model before anything is built, and the result is
 * the same model files with the changed components' sources wrapped in `LoraWeightSource`.
 * Components no LoRA changes keep their own source, so their built models are shared with the
 * plain model's.
 */
import type { ModelFamily } from "../util/vocabulary.js";
import type { ModelFiles } from "../weights/model-files.js";
import { type LoraComponent, LoraFile } from "./lora-file.js";
import { type LoraIdentity, type LoraPatch, LoraWeightSource } from "./lora-source.js";
import {
  describeFamilies,
  FAMILY_NAMES,
  familyMismatch,
  guessLoraFamily,
  type LoraMatch,
  type LoraModel,
  matchLora,
  someNames,
} from "./lora-targets.js";

/** A LoRA to load: its file and weight (default 1; negative weights subtract it). */
export interface LoraRequest {
  readonly path: string;
  readonly weight?: number;
}

/** A LoRA as applied, for records and PNG parameters. */
export interface AppliedLora {
  /** The file name without its extension, as the web UIs name LoRAs. */
  readonly name: string;
  readonly path: string;
  /** The web UIs' short hash (`Lora hashes` in their parameters). */
  readonly hash: string;
  readonly sha256: string;
  readonly weight: number;
  readonly layout: string;
}

export interface LoraApplication {
  /** The model files with the LoRAs merged into the weights they change. */
  readonly files: ModelFiles;
  readonly loras: readonly AppliedLora[];
  /** Identifies the set (files and weights) among the sets applied to one model. */
  readonly key: string;
  /** Closes the LoRA files (not the model's). */
  close(): void;
}

/** Checks the requests' shape and weights before any file is read; throws one line. */
export function checkLoraRequests(requests: readonly LoraRequest[]): void {
  for (const request of requests) {
    if (typeof request?.path !== "string" || request.path === "")
      throw new Error("loras: every LoRA needs a file path");
    const weight = request.weight ?? 1;
    if (typeof weight !== "number" || !Number.isFinite(weight))
      throw new Error(`LoRA ${request.path}: weight must be a finite number; got ${weight}`);
  }
}

/** The model as LoRA matching sees it. */
export function loraModelOf(files: ModelFiles, family: ModelFamily): LoraModel {
  return {
    label: files.label,
    family,
    weights: {
      unet: files.weights.unet,
      text_encoder: files.weights.text_encoder,
      text_encoder_2: files.weights.text_encoder_2,
    },
    unetConfig: files.configs.unet,
  };
}

/**
 * Checks a LoRA against a model: an error for a LoRA made for another kind of model or with no
 * key that lands on a weight; a warning (through `onWarning`) for keys that land nowhere.
 */
export function checkLoraMatch(
  lora: LoraFile,
  model: LoraModel,
  onWarning: ((message: string) => void) | undefined,
  unmatchedError?: string,
): LoraMatch {
  const mismatch = familyMismatch(lora, model);
  if (mismatch) throw new Error(mismatch);
  const match = matchLora(lora, model);
  if (unmatchedError && match.unmatched.length > 0) {
    const modules = new Set(match.unmatched.map((u) => u.key.replace(/\.[^.]+(\.weight)?$/, "")));
    throw new Error(
      `${lora.path}: ${modules.size} of its modules name no weight of ${model.label} (${someNames([...modules], 1)}); ${unmatchedError}`,
    );
  }
  if (match.targets.length === 0) {
    const first = match.unmatched[0];
    throw new Error(
      `${lora.path}: none of its ${match.totalKeys} keys matches a weight of ${model.label} (${FAMILY_NAMES[model.family]}); it looks made for ${describeFamilies(guessLoraFamily(lora))} (first key ${first.key}: ${first.reason})`,
    );
  }
  if (match.unmatched.length > 0) {
    onWarning?.(
      `${lora.path}: ${match.unmatched.length} of ${match.totalKeys} keys match no weight of ${model.label} and are ignored: ${someNames(match.unmatched.map((u) => u.key))}`,
    );
  }
  return match;
}

export interface ApplyLoraOptions {
  readonly family: ModelFamily;
  /** Told about keys that land on no weight (default: console.warn). */
  readonly onWarning?: (message: string) => void;
  /** Makes a key that lands on no weight an error, with this advice. */
  readonly unmatchedError?: string;
}

/**
 * Opens the LoRA files, checks them against the model and wraps the sources they change. A
 * LoRA at weight 0 is checked but changes nothing. Throws one line, leaving nothing open.
 */
export function applyLoras(
  files: ModelFiles,
  requests: readonly LoraRequest[],
  options: ApplyLoraOptions,
): LoraApplication {
  checkLoraRequests(requests);
  const model = loraModelOf(files, options.family);
  const onWarning = options.onWarning ?? ((message: string) => console.warn(message));
  const opened: LoraFile[] = [];
  const close = () => {
    for (const lora of opened) lora.close();
  };
  try {
    const patches = new Map<LoraComponent, Map<string, LoraPatch[]>>();
    const changedBy = new Map<LoraComponent, LoraIdentity[]>();
    const applied: AppliedLora[] = [];
    for (const request of requests) {
      const lora = LoraFile.open(request.path);
      opened.push(lora);
      const weight = request.weight ?? 1;
      const match = checkLoraMatch(lora, model, onWarning, options.unmatchedError);
      applied.push({
        name: lora.name,
        path: request.path,
        hash: lora.hash,
        sha256: lora.sha256,
        weight,
        layout: lora.layout,
      });
      if (weight === 0) continue;
      const components = new Set<LoraComponent>();
      for (const target of match.targets) {
        let byKey = patches.get(target.component);
        if (!byKey) {
          byKey = new Map();
          patches.set(target.component, byKey);
        }
        const list = byKey.get(target.weightKey) ?? [];
        list.push({
          lora,
          module: target.module,
          scale: (weight * target.module.alpha) / target.module.rank,
        });
        byKey.set(target.weightKey, list);
        components.add(target.component);
      }
      for (const component of components) {
        const list = changedBy.get(component) ?? [];
        list.push({ sha256: lora.sha256, weight });
        changedBy.set(component, list);
      }
    }
    const weights = { ...files.weights };
    for (const [component, byKey] of patches) {
      const base = files.weights[component];
      if (base) weights[component] = new LoraWeightSource(base, byKey, changedBy.get(component)!);
    }
    const adapted: ModelFiles = {
      label: files.label,
      family: files.family,
      configs: files.configs,
      weights,
      modelIndex: files.modelIndex,
      close,
    };
    return { files: adapted, loras: applied, key: loraSetKey(applied), close };
  } catch (error) {
    close();
    throw error;
  }
}

/** The files and weights of a set, zero weights left out (they change nothing). */
export function loraSetKey(loras: readonly Pick<AppliedLora, "sha256" | "weight">[]): string {
  return loras
    .filter((l) => l.weight !== 0)
    .map((l) => `${l.sha256}@${l.weight}`)
    .join(",");
}
