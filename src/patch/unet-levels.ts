/**
 * Where a UNet exported by another tool keeps its inputs, and at which spatial level each of its
 * tensors lives. DESIGN.md: "The level of a block comes from its position in the UNet, never
 * from its channel width." Level 1 is the full latent resolution.
 *
 * The level is found from the graph's structure: it starts at 1 on the `sample` input and flows
 * along the data edges in topological order; a convolution or pooling with stride 2 adds one,
 * a Resize with constant scales moves by their factor, and a Resize with computed sizes (the
 * UNet up-samplers, which resize to the skip connection's size) removes one. Shape ops stop the
 * flow, since a shape is not a feature map. A node whose inputs disagree gets no level (a
 * conflict), and so do the values computed from it.
 *
 * When the structure cannot tell (a conflict, or a path the rules do not know), the diffusers
 * module path in node names decides, by the rule the builder uses (`unetBlockLevel`):
 * `down_blocks.i` is level i + 1, `mid_block` is the number of down blocks, `up_blocks.j` is
 * that number minus j.
 */
import { unetBlockLevel } from "../configs/unet-config.js";
import type { GraphProto, NodeProto, ValueInfoProto } from "../onnx/proto.js";
import { type GraphIndex, intsAttribute } from "./graph-index.js";

export interface UnetSignature {
  /** The latent input (B, C, H, W). */
  readonly sample: string;
  /** The timestep input ([B], [1] or a scalar); the reduction's `If` nodes read it. */
  readonly timestep: string;
  /** SDXL-style text_time conditioning (text_embeds and time_ids inputs). */
  readonly textTime: boolean;
  /** The sample's height and width when the export fixed them. */
  readonly staticSize?: { readonly height: number; readonly width: number };
}

const SAMPLE_NAMES = ["sample", "latent_model_input", "x", "latents"];
const TIMESTEP_NAMES = ["timestep", "timesteps", "t"];

/** Finds the UNet inputs, or explains in one line why `graph` is not a UNet. */
export function unetSignature(graph: GraphProto, label: string): UnetSignature {
  const inputs = graph.input.filter(
    (i) => !(graph.initializer ?? []).some((t) => t.name === i.name),
  );
  const byName = (names: readonly string[]) =>
    names.map((n) => inputs.find((i) => i.name === n)).find((i) => i !== undefined);
  const timestep = byName(TIMESTEP_NAMES);
  const sample = byName(SAMPLE_NAMES) ?? inputs.find((i) => rankOf(i) === 4);
  if (!timestep || !sample) {
    const names = inputs.map((i) => i.name).join(", ");
    throw new Error(
      `${label} is not a UNet: it needs a 4-D sample input and a timestep input (its inputs: ${names})`,
    );
  }
  const rank = rankOf(sample);
  if (rank !== undefined && rank !== 4)
    throw new Error(`${label} is not a UNet: input "${sample.name}" has rank ${rank}, not 4`);
  const dims = sample.type?.tensorType?.shape?.dim ?? [];
  const height = dims[2]?.dimValue;
  const width = dims[3]?.dimValue;
  const names = new Set(inputs.map((i) => i.name));
  return {
    sample: sample.name,
    timestep: timestep.name,
    textTime: names.has("text_embeds") || names.has("time_ids"),
    staticSize:
      height !== undefined && width !== undefined && height > 0 && width > 0
        ? { height: Number(height), width: Number(width) }
        : undefined,
  };
}

function rankOf(info: ValueInfoProto): number | undefined {
  return info.type?.tensorType?.shape?.dim.length;
}

const CONFLICT = -1;
const SHAPE_OPS = new Set(["Shape", "Size"]);
const STRIDED_OPS = new Set(["Conv", "MaxPool", "AveragePool", "LpPool"]);

/**
 * The spatial level of every value computed from `sample`; values missing from the map do not
 * depend on it (or only through shapes); a level of -1 marks a conflict.
 */
export function spatialLevels(index: GraphIndex, sample: string): Map<string, number> {
  const levels = new Map<string, number>([[sample, 1]]);
  for (const node of index.topologicalOrder()) {
    if (SHAPE_OPS.has(node.opType)) continue;
    const level = outputLevel(index, node, levels);
    if (level === undefined) continue;
    for (const output of node.output) if (output) levels.set(output, level);
  }
  return levels;
}

function outputLevel(
  index: GraphIndex,
  node: NodeProto,
  levels: ReadonlyMap<string, number>,
): number | undefined {
  const dataInputs =
    STRIDED_OPS.has(node.opType) || node.opType === "Resize" || node.opType === "Upsample"
      ? node.input.slice(0, 1)
      : node.input;
  const found = new Set<number>();
  for (const input of dataInputs) {
    const level = levels.get(input);
    if (level !== undefined) found.add(level);
  }
  if (found.size === 0) return undefined;
  if (found.size > 1 || found.has(CONFLICT)) return CONFLICT;
  const level = [...found][0];
  if (STRIDED_OPS.has(node.opType)) {
    const strides = intsAttribute(node, "strides") ?? [];
    if (strides.every((s) => s === 1)) return level;
    return strides.every((s) => s === 2) ? level + 1 : CONFLICT;
  }
  if (node.opType === "Resize" || node.opType === "Upsample") {
    const scalesInput = node.opType === "Upsample" ? node.input[1] : node.input[2];
    const scales = scalesInput ? index.constantNumbers(scalesInput) : undefined;
    if (scales && scales.length >= 4) {
      const [sh, sw] = scales.slice(-2);
      if (sh === 2 && sw === 2) return level - 1;
      if (sh === 0.5 && sw === 0.5) return level + 1;
      if (sh === 1 && sw === 1) return level;
      return CONFLICT;
    }
    return level - 1;
  }
  return level;
}

/** The level a diffusers module path in `name` implies, given the number of down blocks. */
export function levelFromName(name: string, downBlocks: number): number | undefined {
  const down = /(?:^|[/.])down_blocks[./](\d+)[./]/.exec(name);
  if (down) return unetBlockLevel("down", Number(down[1]), downBlocks);
  if (downBlocks === 0) return undefined;
  if (/(?:^|[/.])mid_block[./]/.test(name)) return unetBlockLevel("mid", 0, downBlocks);
  const up = /(?:^|[/.])up_blocks[./](\d+)[./]/.exec(name);
  return up ? unetBlockLevel("up", Number(up[1]), downBlocks) : undefined;
}

/** The number of distinct `down_blocks.i` in node names (0 when names carry no module paths). */
export function countDownBlocks(index: GraphIndex): number {
  const seen = new Set<string>();
  for (const node of index.nodes) {
    const m = /(?:^|[/.])down_blocks[./](\d+)[./]/.exec(node.name ?? "");
    if (m) seen.add(m[1]);
  }
  return seen.size;
}

/** "down_blocks.0.attentions.0.transformer_blocks.0.attn1" from a node name, when present. */
export function modulePath(name: string | undefined): string | undefined {
  if (!name) return undefined;
  const dotted = name.replace(/^\/+/, "").replace(/\//g, ".");
  const m = /((?:down_blocks|up_blocks)\.\d+|mid_block)\.(.*?\.attn\d)(?:\.|$)/.exec(dotted);
  return m ? `${m[1]}.${m[2]}` : undefined;
}
