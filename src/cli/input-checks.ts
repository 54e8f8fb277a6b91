/**
 * Inputs that parse but make no sense, refused (or warned about) before any work: a NaN image
 * or a silently cut prompt after minutes of computing helps nobody.
 */
import { firstNonFinite, USUAL_GUIDANCE_LIMIT } from "../pipelines/finite-check.js";

/** Guidance beyond this overflows float32 in the guided prediction (|cfg| * |cond - uncond|). */
export const MAX_GUIDANCE = 1000;

/** Refuses --cfg beyond any usable range; warns (on stderr) beyond the usual one. */
export function checkGuidanceFlag(cfg: number): void {
  if (Math.abs(cfg) > MAX_GUIDANCE)
    throw new Error(
      `--cfg ${cfg} is beyond any usable guidance (at most ${MAX_GUIDANCE} in size; usual: 1 to 20)`,
    );
  if (Math.abs(cfg) > USUAL_GUIDANCE_LIMIT)
    process.stderr.write(
      `todo-sd: warning: --cfg ${cfg} is far above the usual 1 to 20; expect a burnt or broken image\n`,
    );
}

/** Refuses a tensor read from a file (--latents, --noise) that holds NaN or infinities. */
export function checkFiniteTensor(data: Float32Array, flag: string, path: string): Float32Array {
  const at = firstNonFinite(data);
  if (at >= 0)
    throw new Error(`${flag}: ${path} holds a non-finite value (${data[at]} at index ${at})`);
  return data;
}

/** CLIP sees 77 tokens: the start and end tokens and 75 of the prompt. */
const PROMPT_TOKENS = 75;

/** Warns (on stderr) about prompts the text encoder would cut, unless they are chunked. */
export function warnLongPrompts(
  tokenizer: { encode(text: string): number[] },
  prompt: string,
  flags: { readonly negative?: string; readonly longPrompts?: boolean },
): void {
  if (flags.longPrompts) return;
  for (const [what, text] of Object.entries({ prompt, "negative prompt": flags.negative })) {
    if (text === undefined) continue;
    const count = tokenizer.encode(text).length;
    if (count > PROMPT_TOKENS)
      process.stderr.write(
        `todo-sd: warning: the ${what} has ${count} tokens; only the first ${PROMPT_TOKENS} are used (--long-prompts encodes all of them in chunks)\n`,
      );
  }
}
