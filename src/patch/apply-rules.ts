/**
 * Runs the attention rules over a UNet exported elsewhere and inserts token reduction into every
 * self-attention they recognise: match, check, then rewrite, counting what was done at each
 * spatial level and by each rule. Nothing is changed unless at least one block is rewritten.
 */
import type { Value } from "../onnx/builder.js";
import { type ModelProto, TensorDataType } from "../onnx/proto.js";
import {
  describeReduction,
  METADATA_PREFIX,
  type ReductionSettings,
  reductionMetadata,
} from "../reduce/options.js";
import { type AttentionSite, scheduleFor } from "../reduce/self-attention.js";
import { type AttentionMatch, type AttentionRule, attentionBlockOutput } from "./attention.js";
import { GraphEdit } from "./graph-edit.js";
import { GraphIndex } from "./graph-index.js";
import { classicAttentionRule } from "./rules/classic-attention.js";
import { fusedAttentionRule } from "./rules/fused-attention.js";
import { sdpaAttentionRule } from "./rules/sdpa-attention.js";
import {
  countDownBlocks,
  levelFromName,
  modulePath,
  spatialLevels,
  type UnetSignature,
  unetSignature,
} from "./unet-levels.js";

/** The attention rules, one per pattern, in the order they are tried. */
export const ATTENTION_RULES: readonly AttentionRule[] = Object.freeze([
  sdpaAttentionRule,
  classicAttentionRule,
  fusedAttentionRule,
]);

export interface PatchedBlock {
  readonly name: string;
  readonly rule: string;
  readonly level: number;
}

export interface SkippedBlock {
  readonly name: string;
  readonly rule: string;
  readonly reason: string;
  /** The spatial level of the block's queries, where known. */
  readonly level?: number;
  /**
   * Where the keys and values come from, where traced: `text` for the conditioning (a graph
   * input other than the sample), `image` for tokens computed from the sample (self-attention
   * whose keys and values were already reduced, in a model with reduction built in).
   */
  readonly keysFrom?: "text" | "image";
}

export interface PatchReport {
  /** Blocks rewritten, per spatial level. */
  readonly byLevel: Readonly<Record<number, number>>;
  /** Blocks rewritten, per rule. */
  readonly byRule: Readonly<Record<string, number>>;
  readonly patched: readonly PatchedBlock[];
  /** Self-attention blocks the settings leave alone (their level is not reduced). */
  readonly untouched: readonly PatchedBlock[];
  /** Attention blocks that were not rewritten, and why (cross-attention among them). */
  readonly skipped: readonly SkippedBlock[];
}

export interface ApplyResult {
  readonly model: ModelProto;
  readonly report: PatchReport;
}

/** Metadata key listing the rewritten blocks per level (`1:4,2:4`). */
export const PATCH_METADATA_KEY = "todo_sd.patch.blocks_per_level";

/**
 * Adds token reduction to the self-attention blocks of `model` (edited in place). Throws a
 * one-line error, leaving the model as it was, when no self-attention is recognised or the
 * settings reduce none of the levels where it sits.
 */
export function applyRules(
  model: ModelProto,
  rules: readonly AttentionRule[],
  settings: ReductionSettings,
  label = "model",
): ApplyResult {
  const existing = (model.metadataProps ?? []).find((p) => p.key === `${METADATA_PREFIX}.method`);
  if (existing)
    throw new Error(
      `${label} already has token reduction (${metadataValue(model, METADATA_PREFIX) ?? existing.value}); patch the original export instead`,
    );
  const signature = unetSignature(model.graph, label);
  const index = new GraphIndex(model.graph);
  const found = findSelfAttention(index, rules, signature, settings);
  if (found.accepted.length === 0)
    throw new Error(
      `no self-attention blocks recognised in ${label}: ${summariseSkipped(found.skipped)}`,
    );
  const reduced = found.accepted.filter((a) => reducesAt(settings, a.level));
  if (reduced.length === 0) {
    const levels = [...new Set(found.accepted.map((a) => a.level))].sort((a, b) => a - b);
    throw new Error(
      `the settings reduce nothing in ${label}: its self-attention sits at levels ${levels.join(", ")} and ${describeReduction(settings)}`,
    );
  }

  const edit = new GraphEdit(model, floatTypeOf(index, reduced[0].match));
  const g = edit.builder;
  const timestep = edit.external(signature.timestep);
  const grids = new Map<number, { height: Value; width: Value }>();
  const gridAt = (level: number) => {
    let grid = grids.get(level);
    if (!grid) {
      grid = levelGridValues(edit, signature, level);
      grids.set(level, grid);
    }
    return grid;
  };

  const byLevel: Record<number, number> = {};
  const byRule: Record<string, number> = {};
  const patched: PatchedBlock[] = [];
  for (const { match, rule, level, name } of reduced) {
    const site: AttentionSite = { level, name, timestep, ...gridAt(level) };
    rule.rewrite(edit, match, { site, settings });
    byLevel[level] = (byLevel[level] ?? 0) + 1;
    byRule[rule.name] = (byRule[rule.name] ?? 0) + 1;
    patched.push({ name, rule: rule.name, level });
  }
  if (g.nodeCount === 0) throw new Error(`${label}: the rewrite added nothing`);
  try {
    edit.commit();
  } catch (error) {
    throw new Error(`${label}: ${(error as Error).message}`);
  }

  const metadata: Record<string, string> = {
    ...reductionMetadata(settings),
    [PATCH_METADATA_KEY]: Object.entries(byLevel)
      .map(([level, count]) => `${level}:${count}`)
      .join(","),
  };
  model.metadataProps = [
    ...(model.metadataProps ?? []).filter((p) => !(p.key in metadata)),
    ...Object.entries(metadata).map(([key, value]) => ({ key, value })),
  ];
  const untouched = found.accepted
    .filter((a) => !reducesAt(settings, a.level))
    .map(({ name, rule, level }) => ({ name, rule: rule.name, level }));
  return { model, report: { byLevel, byRule, patched, untouched, skipped: found.skipped } };
}

interface AcceptedBlock {
  readonly match: AttentionMatch;
  readonly rule: AttentionRule;
  readonly level: number;
  readonly name: string;
}

/** Matches and checks every rule; a block found by two rules counts once (the first). */
export function findSelfAttention(
  index: GraphIndex,
  rules: readonly AttentionRule[],
  signature: UnetSignature,
  settings?: ReductionSettings,
): { accepted: AcceptedBlock[]; skipped: SkippedBlock[] } {
  const levels = spatialLevels(index, signature.sample);
  const downBlocks = countDownBlocks(index);
  const seen = new Set<string>();
  const accepted: AcceptedBlock[] = [];
  const skipped: SkippedBlock[] = [];
  let counter = 0;
  for (const rule of rules) {
    for (const match of rule.match(index)) {
      const anchorKey = match.anchor.output[0];
      if (seen.has(anchorKey)) continue;
      seen.add(anchorKey);
      const name = blockName(match) ?? `attention_${counter}`;
      counter++;
      let verdict = rule.check(index, match);
      if (verdict === true && settings?.target === "all") verdict = checkAllTarget(index, match);
      if (verdict !== true) {
        if (typeof match.traced === "string") {
          skipped.push({ name, rule: rule.name, reason: verdict });
        } else {
          const level = levels.get(match.traced.query.tokens) ?? levelFromName(name, downBlocks);
          const keysFrom = dependsOn(index, match.traced.key.tokens, signature.sample)
            ? "image"
            : "text";
          skipped.push({ name, rule: rule.name, reason: verdict, level, keysFrom });
        }
        continue;
      }
      const tokens = typeof match.traced === "string" ? "" : match.traced.query.tokens;
      let level = levels.get(tokens);
      if (level === undefined || level < 1) level = levelFromName(name, downBlocks);
      if (level === undefined) {
        skipped.push({ name, rule: rule.name, reason: "cannot tell its spatial level" });
        continue;
      }
      accepted.push({ match, rule, level, name });
    }
  }
  return { accepted, skipped };
}

/** Whether tensor `name` is computed from graph input `input` (a bounded walk up the graph). */
function dependsOn(index: GraphIndex, name: string, input: string): boolean {
  const seen = new Set<string>();
  const stack = [name];
  while (stack.length > 0 && seen.size < 100_000) {
    const tensor = stack.pop()!;
    if (tensor === input) return true;
    if (seen.has(tensor)) continue;
    seen.add(tensor);
    const node = index.producer(tensor);
    if (node) for (const source of node.input) if (source) stack.push(source);
  }
  return false;
}

/** `--merge-target all` also reduces the queries and restores the output. */
function checkAllTarget(index: GraphIndex, match: AttentionMatch): true | string {
  if (typeof match.traced === "string") return match.traced;
  for (const node of match.traced.query.path) {
    if (node.opType !== "Reshape") continue;
    const shape = index.constantNumbers(node.input[1]);
    if (shape && !shape.some((d) => d === 0 || d === -1))
      return `Reshape "${node.name ?? node.output[0]}" fixes the query length (a static-shape export)`;
  }
  const output = attentionBlockOutput(index, match);
  return typeof output === "string" ? output : true;
}

function blockName(match: AttentionMatch): string | undefined {
  if (typeof match.traced !== "string") {
    const fromProjection = modulePath(match.traced.key.node.name);
    if (fromProjection) return fromProjection;
  }
  return modulePath(match.anchor.name);
}

/** True when some phase of the schedule reduces at `level`. */
export function reducesAt(settings: ReductionSettings, level: number): boolean {
  const visit = (s: ReturnType<typeof scheduleFor>): boolean =>
    s.kind === "leaf" ? s.plan.kind !== "none" : visit(s.above) || visit(s.below);
  return visit(scheduleFor(settings, level));
}

/**
 * The token grid at `level` as int64 scalars: the sample's height and width halved (rounding
 * up, as the UNet's stride-2 convolutions do) once per level below the first. Constants when
 * the export fixed the sample size, so the reduction needs no run-time branch.
 */
function levelGridValues(
  edit: GraphEdit,
  signature: UnetSignature,
  level: number,
): { height: Value; width: Value } {
  const g = edit.builder;
  if (signature.staticSize) {
    let { height, width } = signature.staticSize;
    for (let l = 1; l < level; l++) {
      height = Math.ceil(height / 2);
      width = Math.ceil(width / 2);
    }
    return { height: g.int64([height], []), width: g.int64([width], []) };
  }
  return g.scope(`todo_sd/grid_level_${level}`, () => {
    const shape = g.shape(edit.external(signature.sample));
    let height = g.gather(shape, g.int64([2], []));
    let width = g.gather(shape, g.int64([3], []));
    const one = g.int64([1], []);
    const two = g.int64([2], []);
    for (let l = 1; l < level; l++) {
      height = g.div(g.add(height, one), two);
      width = g.div(g.add(width, one), two);
    }
    return { height, width };
  });
}

function floatTypeOf(index: GraphIndex, match: AttentionMatch): "float32" | "float16" {
  if (typeof match.traced === "string") return "float32";
  const weight = match.traced.key.node.input[1 - match.traced.key.inputIndex];
  const tensor = index.constantTensor(weight);
  if (tensor?.dataType === TensorDataType.FLOAT16) return "float16";
  const producer = index.producer(weight);
  if (producer) {
    const source = index.constantTensor(producer.input[0]);
    if (source?.dataType === TensorDataType.FLOAT16) return "float16";
  }
  return "float32";
}

function summariseSkipped(skipped: readonly SkippedBlock[]): string {
  if (skipped.length === 0)
    return "it has no attention (Softmax or MultiHeadAttention) the rules know";
  // Group reasons that differ only in the node they name; show the first of each group.
  const groups = new Map<string, { reason: string; count: number }>();
  for (const s of skipped) {
    const key = s.reason.replace(/"[^"]*"/g, '""');
    const group = groups.get(key);
    if (group) group.count++;
    else groups.set(key, { reason: s.reason, count: 1 });
  }
  return [...groups.values()]
    .map(({ reason, count }) => `${count} block${count === 1 ? "" : "s"}: ${reason}`)
    .join("; ");
}

function metadataValue(model: ModelProto, key: string): string | undefined {
  return (model.metadataProps ?? []).find((p) => p.key === key)?.value;
}

/** One line per level, for printing: "level 1: 4 blocks (sdpa-attention)". */
export function describeReport(report: PatchReport): string[] {
  const lines: string[] = [];
  for (const level of Object.keys(report.byLevel)
    .map(Number)
    .sort((a, b) => a - b)) {
    const blocks = report.patched.filter((p) => p.level === level);
    const rules = [...new Set(blocks.map((b) => b.rule))].join(", ");
    lines.push(
      `level ${level}: ${blocks.length} self-attention block${blocks.length === 1 ? "" : "s"} patched (${rules})`,
    );
  }
  const untouched = new Map<number, number>();
  for (const u of report.untouched) untouched.set(u.level, (untouched.get(u.level) ?? 0) + 1);
  for (const [level, count] of [...untouched].sort((a, b) => a[0] - b[0]))
    lines.push(`level ${level}: ${count} self-attention block${count === 1 ? "" : "s"} left as is`);
  const cross = report.skipped.filter((s) => s.reason.startsWith("cross-attention")).length;
  if (cross > 0) lines.push(`${cross} cross-attention block${cross === 1 ? "" : "s"} left as is`);
  for (const s of report.skipped) {
    if (!s.reason.startsWith("cross-attention")) lines.push(`skipped ${s.name}: ${s.reason}`);
  }
  return lines;
}
