/**
 * Prompts to the UNet's text conditioning, with classifier-free guidance's unconditional half
 * first (Ho and Salimans 2022). SD 1.x/2.x use one CLIP text encoder's last (or clip-skipped)
 * hidden state; SDXL joins two encoders' penultimate states and adds the second one's pooled
 * embedding and the size micro-conditioning (Podell et al. 2023).
 */
import type { ClipTokenizer } from "../tokenizers/clip-tokenizer.js";
import type { ModelFamily } from "../util/vocabulary.js";
import type { HostTensor, TextEncoderComponent, UnetInputs } from "./components.js";
import type { GenerationPlan } from "./generation-plan.js";
import {
  combineSdxlTextEmbeddings,
  concatAxis1,
  repeatBatchForGuidance,
  zerosLike,
} from "./host-tensors.js";

/** What encoding needs of a model beyond its text encoders. */
export interface PromptModel {
  readonly family: ModelFamily;
  readonly tokenizers: readonly ClipTokenizer[];
  /** model_index.json's force_zeros_for_empty_prompt (SDXL). */
  readonly forceZerosForEmptyPrompt: boolean;
}

/** The UNet inputs other than the sample and timestep, `plan.batch` rows (twice when guided). */
export type TextConditioning = Pick<UnetInputs, "encoderHiddenStates" | "textEmbeds" | "timeIds">;

type Pair = { positive: HostTensor; negative?: HostTensor };

/** Encodes the plan's prompts (and negative prompts when guided) for every image of the batch. */
export async function encodeConditioning(
  plan: GenerationPlan,
  model: PromptModel,
  encoders: readonly TextEncoderComponent[],
): Promise<TextConditioning> {
  const pairs = await encodePairs(plan, model, encoders);
  const repeat = (pair: Pair) => repeatBatchForGuidance(pair, plan.imagesPerPrompt, plan.guided);
  return {
    encoderHiddenStates: repeat(pairs.hiddenStates),
    textEmbeds: pairs.pooled && repeat(pairs.pooled),
    timeIds: pairs.timeIds && repeat(pairs.timeIds),
  };
}

async function encodePairs(
  plan: GenerationPlan,
  model: PromptModel,
  encoders: readonly TextEncoderComponent[],
): Promise<{ hiddenStates: Pair; pooled?: Pair; timeIds?: Pair }> {
  const { prompts, negativePrompts, guided, clipSkip, longPrompts } = plan;
  const negatives = negativePrompts ?? prompts.map(() => "");
  if (model.family !== "sdxl") {
    const positive = await encodeSd(model, encoders, prompts, clipSkip, longPrompts);
    if (!guided) return { hiddenStates: { positive } };
    // The reference applies clip skip to the prompt only, not to the negative prompt.
    const tokens = positive.dims[1];
    const negative = await encodeSd(model, encoders, negatives, undefined, longPrompts, tokens);
    return { hiddenStates: { positive, negative } };
  }
  const positive = await encodeSdxl(model, encoders, prompts, clipSkip, longPrompts);
  const { options, width, height } = plan;
  const timeIdsRow = [
    ...(options.originalSize ?? [height, width]),
    ...(options.cropsCoordsTopLeft ?? [0, 0]),
    ...(options.targetSize ?? [height, width]),
  ];
  const timeIds = {
    data: Float32Array.from(prompts.flatMap(() => timeIdsRow)),
    dims: [prompts.length, 6],
  };
  if (!guided)
    return {
      hiddenStates: { positive: positive.hiddenStates },
      pooled: { positive: positive.pooled },
      timeIds: { positive: timeIds },
    };
  const negative =
    negativePrompts === undefined && model.forceZerosForEmptyPrompt
      ? { hiddenStates: zerosLike(positive.hiddenStates), pooled: zerosLike(positive.pooled) }
      : await encodeSdxl(
          model,
          encoders,
          negatives,
          clipSkip,
          longPrompts,
          positive.hiddenStates.dims[1],
        );
  return {
    hiddenStates: { positive: positive.hiddenStates, negative: negative.hiddenStates },
    pooled: { positive: positive.pooled, negative: negative.pooled },
    timeIds: { positive: timeIds, negative: timeIds },
  };
}

/** SD 1.x / 2.x: last hidden state, or with clip skip the earlier state through the final norm. */
async function encodeSd(
  model: PromptModel,
  encoders: readonly TextEncoderComponent[],
  prompts: readonly string[],
  clipSkip: number | undefined,
  longPrompts: "truncate" | "chunk",
  tokens?: number,
): Promise<HostTensor> {
  const [tokenizer] = model.tokenizers;
  const [encoder] = encoders;
  const chunks = padChunkCount(tokenize(tokenizer, prompts, longPrompts), tokens, tokenizer);
  let result: HostTensor | undefined;
  for (const ids of chunks) {
    const out = await encoder.encode(
      ids,
      clipSkip ? { hiddenStateFromEnd: clipSkip + 1, finalLayerNorm: true } : {},
    );
    const states = clipSkip ? out.skipHiddenState! : out.lastHiddenState;
    result = result ? concatAxis1(result, states) : states;
  }
  return result!;
}

/** SDXL: penultimate (or clip-skipped) states of both encoders side by side, pooled from the second. */
async function encodeSdxl(
  model: PromptModel,
  encoders: readonly TextEncoderComponent[],
  prompts: readonly string[],
  clipSkip: number | undefined,
  longPrompts: "truncate" | "chunk",
  tokens?: number,
): Promise<{ hiddenStates: HostTensor; pooled: HostTensor }> {
  const request = { hiddenStateFromEnd: (clipSkip ?? 0) + 2, finalLayerNorm: false };
  const states: HostTensor[] = [];
  let pooled: HostTensor | undefined;
  for (const [i, encoder] of encoders.entries()) {
    const tokenizer = model.tokenizers[i];
    const chunks = padChunkCount(tokenize(tokenizer, prompts, longPrompts), tokens, tokenizer);
    let joined: HostTensor | undefined;
    for (const [k, ids] of chunks.entries()) {
      const out = await encoder.encode(ids, request);
      joined = joined ? concatAxis1(joined, out.skipHiddenState!) : out.skipHiddenState!;
      if (i === encoders.length - 1 && k === 0) pooled = out.pooled;
    }
    states.push(joined!);
  }
  if (!pooled) throw new Error("the second SDXL text encoder gave no pooled text embeddings");
  return { hiddenStates: combineSdxlTextEmbeddings(states[0], states[1]), pooled };
}

/** Tokenizes prompts to [batch][77] ids, or, in chunk mode, concatenated 77-token chunks. */
function tokenize(
  tokenizer: ClipTokenizer,
  prompts: readonly string[],
  mode: "truncate" | "chunk",
): number[][][] {
  if (mode === "truncate") return [tokenizer.call([...prompts]).inputIds];
  const chunked = prompts.map((p) => tokenizer.encodeChunked(p));
  const count = Math.max(...chunked.map((c) => c.length));
  const padChunk = tokenizer.encodeChunked("")[0];
  // Chunk k of every prompt, padded with empty chunks so every prompt has `count` of them.
  return Array.from({ length: count }, (_, k) => chunked.map((c) => c[k] ?? padChunk));
}

/** Negative prompts get as many chunks as the prompt, so both embeddings have one length. */
function padChunkCount(
  chunks: number[][][],
  tokens: number | undefined,
  tokenizer: ClipTokenizer,
): number[][][] {
  if (tokens === undefined) return chunks;
  const wanted = Math.max(1, Math.round(tokens / tokenizer.modelMaxLength));
  if (chunks.length > wanted) return chunks.slice(0, wanted);
  const empty = tokenizer.call([""]).inputIds[0];
  while (chunks.length < wanted) chunks.push(chunks[0].map(() => empty));
  return chunks;
}
