/**
 * The contract between the model builders and token reduction (ToDo / ToMe): a UNet builds each
 * self-attention (attn1) through `selfAttentionWithReduction`, handing over the token sequence,
 * where it sits (level and grid), and a callback that builds the attention itself. The reduction
 * module decides what the queries and keys/values are, and wraps the choice in an `If` on the
 * timestep so that one model serves every step. Cross-attention never comes here.
 *
 * `attend` is called exactly once, in `g`, whatever the schedule: the `If` nodes choose the
 * tokens that go in (and, for `--merge-target all`, restore what comes out), so the attention
 * and its weights exist once in the graph. In a step where nothing is reduced the `If` passes
 * the tokens through unchanged and the result is `attend(g, tokens, tokens)`, the baseline.
 */
import type { GraphBuilder, Value } from "../onnx/builder.js";
import type { ElementType } from "../onnx/tensor-data.js";
import { mergeTokens, restoreTokens, saltOf } from "./bipartite-merge.js";
import { ifElse, type TokenGrid } from "./graph-helpers.js";
import { type LevelPlan, levelPlan, type ReductionSettings, samePlan } from "./options.js";
import { downsampleTokens, downsampleTokensGated, upsampleTokens } from "./resample.js";
import { firstTimestep, timestepAbove, timestepCutoff } from "./timestep.js";

export type { ReductionSettings } from "./options.js";

/** Builds attention from queries (B, Nq, C) and keys/values source (B, Nk, C) to (B, Nq, C). */
export type Attend = (g: GraphBuilder, queries: Value, keysValues: Value) => Value;

export interface AttentionSite {
  /** Spatial level: 1 = full latent resolution, 2 = half of it, ... */
  readonly level: number;
  /** int64 scalars: the token grid of this block at run time (tokens = height * width). */
  readonly height: Value;
  readonly width: Value;
  /** The UNet's `timestep` input, float [B]. */
  readonly timestep: Value;
  /** A stable name of the block, for node names. */
  readonly name: string;
}

/**
 * What a self-attention does over time: a leaf is one plan; a branch takes `above` while the
 * float32 timestep is > `cutoff` (the reference's t/1000 > threshold) and `below` otherwise.
 */
export type Schedule =
  | { readonly kind: "leaf"; readonly plan: LevelPlan }
  | {
      readonly kind: "branch";
      readonly cutoff: number;
      readonly above: Schedule;
      readonly below: Schedule;
    };

const leaf = (plan: LevelPlan): Schedule => ({ kind: "leaf", plan });

function branch(cutoff: number, above: Schedule, below: Schedule): Schedule {
  if (above.kind === "leaf" && below.kind === "leaf" && samePlan(above.plan, below.plan))
    return above;
  return { kind: "branch", cutoff, above, below };
}

/**
 * The schedule of one self-attention, after the reference: nothing once t/1000 <= stop; the
 * secondary method once t/1000 <= switch; the primary method above both.
 */
export function scheduleFor(settings: ReductionSettings, level: number): Schedule {
  const primary = leaf(levelPlan(settings, level, settings.method));
  const none = leaf({ kind: "none" });
  const stop = timestepCutoff(settings.stopThreshold);
  if (settings.switchThreshold <= settings.stopThreshold) return branch(stop, primary, none);
  const secondary = leaf(levelPlan(settings, level, settings.secondary));
  return branch(timestepCutoff(settings.switchThreshold), primary, branch(stop, secondary, none));
}

/** Self-attention over `tokens` (B, N, C); without reduction it is `attend(tokens, tokens)`. */
export function selfAttentionWithReduction(
  g: GraphBuilder,
  tokens: Value,
  site: AttentionSite,
  settings: ReductionSettings | undefined,
  attend: Attend,
): Value {
  const schedule = settings ? scheduleFor(settings, site.level) : leaf({ kind: "none" });
  if (!settings || (schedule.kind === "leaf" && schedule.plan.kind === "none"))
    return attend(g, tokens, tokens);
  const context: SiteContext = {
    root: g,
    grid: { tokens, height: site.height, width: site.width },
    site,
    settings,
  };
  if (settings.target === "kv") {
    const gated = gatedNearestPlan(schedule);
    if (gated) {
      // The common case (nearest ToDo, no reduction once t/1000 <= stop) needs no If.
      const active = timestepAbove(g, site.timestep, gated.cutoff);
      return attend(g, tokens, downsampleTokensGated(g, context.grid, gated.factor, active));
    }
    const [keysValues] = buildSchedule(
      g,
      `${site.name}/reduce`,
      schedule,
      context,
      [g.floatType],
      (b, plan) => [reduce(b, plan, context, false).tokens],
    );
    return attend(g, tokens, keysValues);
  }
  const [reduced, restoreIndex] = buildSchedule(
    g,
    `${site.name}/reduce`,
    schedule,
    context,
    [g.floatType, "int64"],
    (b, plan) => {
      const r = reduce(b, plan, context, true);
      return [r.tokens, r.restoreIndex];
    },
  );
  const attended = attend(g, reduced, reduced);
  const [restored] = buildSchedule(
    g,
    `${site.name}/restore`,
    schedule,
    context,
    [g.floatType],
    (b, plan) => [restore(b, plan, context, attended, restoreIndex)],
  );
  return restored;
}

/** A schedule of nearest ToDo above a cutoff and nothing below it, as a factor and cutoff. */
function gatedNearestPlan(schedule: Schedule): { factor: number; cutoff: number } | undefined {
  if (schedule.kind !== "branch") return undefined;
  const { above, below } = schedule;
  if (above.kind !== "leaf" || below.kind !== "leaf" || below.plan.kind !== "none")
    return undefined;
  if (above.plan.kind !== "todo" || above.plan.mode !== "nearest") return undefined;
  return { factor: above.plan.factor, cutoff: schedule.cutoff };
}

interface SiteContext {
  /** The graph the site was built in: timestep conditions are made there, once per model. */
  readonly root: GraphBuilder;
  readonly grid: TokenGrid;
  readonly site: AttentionSite;
  readonly settings: ReductionSettings;
}

/** Nested `If`s on the timestep, one leaf builder per plan. */
function buildSchedule(
  g: GraphBuilder,
  name: string,
  schedule: Schedule,
  context: SiteContext,
  types: readonly ElementType[],
  build: (b: GraphBuilder, plan: LevelPlan) => Value[],
): Value[] {
  if (schedule.kind === "leaf") return build(g, schedule.plan);
  const condition = timestepAbove(context.root, context.site.timestep, schedule.cutoff);
  return ifElse(
    g,
    condition,
    name,
    types,
    (b) => buildSchedule(b, `${name}/above`, schedule.above, context, types, build),
    (b) => buildSchedule(b, `${name}/below`, schedule.below, context, types, build),
  );
}

function reduce(
  g: GraphBuilder,
  plan: LevelPlan,
  context: SiteContext,
  restorable: boolean,
): { tokens: Value; restoreIndex: Value } {
  const placeholder = () => g.op("Identity", [g.int64([0])]);
  const { grid, settings, site } = context;
  switch (plan.kind) {
    case "none":
      return { tokens: g.op("Identity", [grid.tokens]), restoreIndex: placeholder() };
    case "todo":
      return {
        tokens: downsampleTokens(g, grid, plan.factor, plan.mode),
        restoreIndex: placeholder(),
      };
    case "tome": {
      const random = settings.random
        ? {
            seed: settings.seed,
            salt: saltOf(site.name),
            timestep: firstTimestep(g, site.timestep),
          }
        : undefined;
      const options = {
        ratio: plan.ratio,
        strideX: settings.strideX,
        strideY: settings.strideY,
        random,
      };
      const { merged, restoreIndex } = mergeTokens(g, grid, options, restorable);
      return { tokens: merged, restoreIndex: restoreIndex ?? placeholder() };
    }
  }
}

function restore(
  g: GraphBuilder,
  plan: LevelPlan,
  context: SiteContext,
  attended: Value,
  restoreIndex: Value,
): Value {
  switch (plan.kind) {
    case "none":
      return g.op("Identity", [attended]);
    case "todo":
      return upsampleTokens(g, attended, context.grid, plan.factor, plan.mode);
    case "tome":
      return restoreTokens(g, attended, restoreIndex);
  }
}
