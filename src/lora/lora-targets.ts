/**
 * Which weight of a model each module of a LoRA file changes. Module names are looked up in an
 * index built from the model's own key names, so no naming rule has to be guessed: every
 * `<module>.weight` of a Linear or Conv2d is entered dotted (`down_blocks.0.attentions.0...to_q`)
 * and underscored (kohya's spelling, which cannot be turned back into dots unambiguously),
 * with and without the text encoders' `text_model.` level (transformers 5 dropped it), and, for
 * the UNet, under its original LDM name (`input_blocks.4.1.transformer_blocks.0.attn1.to_q`),
 * which some community files use. Every key of the file either lands on a weight of the right
 * shape or is reported.
 */
import type { JsonObject } from "../configs/config-json.js";
import { parseUnetConfig } from "../configs/unet-config.js";
import type { ModelFamily } from "../util/vocabulary.js";
import { ldmUnetPlan } from "../weights/ldm-plans.js";
import type { WeightSource } from "../weights/source.js";
import type { Shape } from "../weights/weight-modules.js";
import type { LoraComponent, LoraFile, LoraModule, SkippedKey } from "./lora-file.js";

export const FAMILY_NAMES: Readonly<Record<ModelFamily, string>> = Object.freeze({
  sd1: "SD 1.x",
  sd2: "SD 2.x",
  sdxl: "SDXL",
});

/** What matching needs of a model: the key names and shapes of the components a LoRA may change. */
export interface LoraModel {
  readonly label: string;
  readonly family: ModelFamily;
  readonly weights: Partial<Record<LoraComponent, Pick<WeightSource, "keys" | "info">>>;
  /** The UNet's config, for its LDM module names. */
  readonly unetConfig?: JsonObject;
}

/** One module of a LoRA on one weight of the model. */
export interface LoraTarget {
  readonly module: LoraModule;
  readonly component: LoraComponent;
  /** The model's key (`...attn1.to_q.weight`). */
  readonly weightKey: string;
}

export interface LoraMatch {
  readonly targets: readonly LoraTarget[];
  /** Keys of the file that land on no weight, and why. */
  readonly unmatched: readonly SkippedKey[];
  readonly totalKeys: number;
  readonly matchedKeys: number;
}

/** Lookup name -> weight key; null where two weights share a name (then neither is used). */
type ModuleIndex = Map<string, string | null>;

const indexMemo = new WeakMap<object, ModuleIndex>();

function enter(index: ModuleIndex, name: string, key: string): void {
  const known = index.get(name);
  if (known === undefined) index.set(name, key);
  else if (known !== key) index.set(name, null);
}

function enterModule(index: ModuleIndex, module: string, key: string): void {
  const forms = [module];
  if (module.startsWith("text_model.")) forms.push(module.slice("text_model.".length));
  for (const form of forms) {
    enter(index, form, key);
    enter(index, form.replace(/\./g, "_"), key);
  }
}

function moduleIndex(
  source: Pick<WeightSource, "keys" | "info">,
  unetConfig: JsonObject | undefined,
): ModuleIndex {
  const memo = indexMemo.get(source);
  if (memo) return memo;
  const index: ModuleIndex = new Map();
  const layers = source
    .keys()
    .filter((key) => key.endsWith(".weight") && [2, 4].includes(source.info(key).shape.length));
  for (const key of layers) enterModule(index, key.slice(0, -".weight".length), key);
  if (unetConfig) {
    let plan: ReturnType<typeof ldmUnetPlan> | undefined;
    try {
      plan = ldmUnetPlan(parseUnetConfig(unetConfig, undefined, "weights"), "");
    } catch {
      // A config the LDM rules do not cover: its LoRAs can still use diffusers names.
    }
    for (const key of layers) {
      const ldm = plan?.get(key)?.source;
      if (ldm?.endsWith(".weight")) enterModule(index, ldm.slice(0, -".weight".length), key);
    }
  }
  indexMemo.set(source, index);
  return index;
}

/** Why a module's delta cannot be added to a weight of `shape`, or undefined when it can. */
export function shapeProblem(module: LoraModule, shape: Shape): string | undefined {
  const size = (s: Shape) => s.slice(1).reduce((a, b) => a * b, 1);
  const fits =
    (shape.length === 2 || shape.length === 4) &&
    module.up[0] === shape[0] &&
    size(module.down) === size(shape) &&
    (module.down.length === 2 || shape.length === 2 || module.down[1] === shape[1]);
  if (fits) return undefined;
  const delta =
    module.down.length === 4
      ? `[${module.up[0]},${module.down.slice(1).join(",")}]`
      : `[${module.up[0]},${module.down[1]}]`;
  return `its delta ${delta} does not fit the weight [${shape.join(",")}]`;
}

/** Matches every module of a LoRA file to the model's weights. */
export function matchLora(lora: LoraFile, model: LoraModel): LoraMatch {
  const targets: LoraTarget[] = [];
  const unmatched: SkippedKey[] = [...lora.skipped];
  for (const module of lora.modules) {
    const source = model.weights[module.component];
    const miss = (reason: string) => {
      for (const key of module.keys) unmatched.push({ key, reason });
    };
    if (!source) {
      miss(`the model has no ${module.component}`);
      continue;
    }
    const index = moduleIndex(source, module.component === "unet" ? model.unetConfig : undefined);
    const weightKey = index.get(module.path);
    if (weightKey === null) {
      miss(`"${module.path}" names more than one weight`);
      continue;
    }
    if (weightKey === undefined) {
      miss(`no ${module.component} weight is named "${module.path}"`);
      continue;
    }
    const problem = shapeProblem(module, source.info(weightKey).shape);
    if (problem) {
      miss(problem);
      continue;
    }
    targets.push({ module, component: module.component, weightKey });
  }
  const totalKeys = lora.file.keys().length;
  return { targets, unmatched, totalKeys, matchedKeys: totalKeys - unmatched.length };
}

// ---- families ------------------------------------------------------------------------------

/** The families a LoRA file can be for, from its names and a few widths, with the evidence. */
export interface LoraFamilyGuess {
  readonly families: readonly ModelFamily[];
  readonly evidence: readonly string[];
  /** Whether the file has keys for a second text encoder (SDXL) / is a one-encoder kohya file. */
  readonly secondEncoder: boolean;
  readonly singleEncoder: boolean;
  /** The width of the text features its cross-attention LoRAs read, when it has any. */
  readonly contextWidth?: number;
}

const CONTEXT_WIDTH_FAMILY: Readonly<Record<number, ModelFamily>> = { 768: "sd1", 1024: "sd2" };

export function guessLoraFamily(lora: LoraFile): LoraFamilyGuess {
  let families: ModelFamily[] = ["sd1", "sd2", "sdxl"];
  const evidence: string[] = [];
  const narrow = (allowed: readonly ModelFamily[], why: string) => {
    const next = families.filter((f) => allowed.includes(f));
    if (next.length === 0) return;
    families = next;
    evidence.push(why);
  };
  const secondEncoder = lora.modules.some((m) => m.component === "text_encoder_2");
  // SDXL trainers that train the text encoders train both (kohya names them te1/te2).
  const kohyaSingle = lora.modules.some((m) => m.name.startsWith("lora_te_"));
  const singleEncoder =
    !secondEncoder && (kohyaSingle || lora.modules.some((m) => m.component === "text_encoder"));
  if (secondEncoder) narrow(["sdxl"], "keys for a second text encoder");
  else if (kohyaSingle) narrow(["sd1", "sd2"], "kohya lora_te_ keys of a one-encoder model");
  else if (singleEncoder) narrow(["sd1", "sd2"], "keys for one text encoder only");
  if (lora.modules.some((m) => /(^|[._])(add_embedding|label_emb)[._]/.test(m.path)))
    narrow(["sdxl"], "keys for SDXL's added conditioning");
  const toK = lora.modules.find(
    (m) => m.component === "unet" && /attn2[._]to_k$/.test(m.path) && m.down.length === 2,
  );
  const contextWidth = toK?.down[1];
  if (contextWidth === 2048) narrow(["sdxl"], "cross-attention width 2048");
  else if (contextWidth !== undefined && CONTEXT_WIDTH_FAMILY[contextWidth])
    narrow([CONTEXT_WIDTH_FAMILY[contextWidth]], `cross-attention width ${contextWidth}`);
  const textWidth = lora.modules.find(
    (m) => m.component === "text_encoder" && /q_proj$/.test(m.path),
  )?.down[1];
  if (textWidth === 1024) narrow(["sd2"], "text encoder width 1024");
  else if (textWidth === 768) narrow(["sd1", "sdxl"], "text encoder width 768");
  return { families, evidence, secondEncoder, singleEncoder, contextWidth };
}

export function describeFamilies(guess: LoraFamilyGuess): string {
  if (guess.families.length === 3) return "an unknown model family";
  const names = guess.families.map((f) => FAMILY_NAMES[f]).join(" or ");
  return `${names} (${guess.evidence.join(", ")})`;
}

/** The cross-attention widths of a UNet config (one per block, or one for all). */
function contextWidths(config: JsonObject | undefined): number[] {
  const value = config?.cross_attention_dim;
  if (typeof value === "number") return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === "number");
  return [];
}

/**
 * An error message when the LoRA is plainly for another kind of model (a second text encoder
 * the model lacks, or the other way round, or another cross-attention width); else undefined.
 */
export function familyMismatch(lora: LoraFile, model: LoraModel): string | undefined {
  const guess = guessLoraFamily(lora);
  const modelHasSecond = model.weights.text_encoder_2 !== undefined;
  const widths = contextWidths(model.unetConfig);
  const conflict =
    (guess.secondEncoder && !modelHasSecond) ||
    (guess.singleEncoder && modelHasSecond) ||
    (guess.contextWidth !== undefined && widths.length > 0 && !widths.includes(guess.contextWidth));
  if (!conflict) return undefined;
  return `${lora.path}: a LoRA for ${describeFamilies(guess)}; the model ${model.label} is ${FAMILY_NAMES[model.family]}`;
}

/** "a, b, c and 4 more" */
export function someNames(names: readonly string[], shown = 3): string {
  const head = names.slice(0, shown).join(", ");
  return names.length > shown ? `${head} and ${names.length - shown} more` : head;
}
