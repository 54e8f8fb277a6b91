/**
 * diffusers' ONNX export of the VAE encoder samples the latent inside the graph:
 * `mean + exp(0.5 * logvar) * RandomNormalLike(mean)`, with onnxruntime's own random numbers.
 * To reproduce a reference run, img2img must draw that noise itself, in the reference order.
 * This rule finds the sampling and makes the graph output the distribution instead: the mean
 * and the (clamped) log-variance of DiagonalGaussianDistribution (Kingma & Welling 2014).
 *
 *   moments ─ Slice ─ mean ─────────────────────────────┐
 *           └ Slice ─ Clip ─ logvar ─ Mul(0.5) ─ Exp ─ Mul ─ Add ─ latent_sample
 *                                 RandomNormalLike ─ [Cast] ┘
 */
import { type NodeProto, TensorDataType } from "../../onnx/proto.js";
import type { RewriteRule } from "../attention.js";
import type { GraphEdit } from "../graph-edit.js";
import type { GraphIndex } from "../graph-index.js";

export interface SampledLatentMatch {
  readonly random: NodeProto;
  /** The graph output that carries the sample. */
  readonly output: string;
  /** The mean and log-variance values, or why they could not be found. */
  readonly moments: { readonly mean: string; readonly logvar: string } | string;
}

export interface MomentOutputs {
  readonly mean: string;
  readonly logvar: string;
}

const RANDOM_OPS = new Set(["RandomNormalLike", "RandomNormal"]);

export const vaeEncoderMomentsRule: RewriteRule<SampledLatentMatch, MomentOutputs> = {
  name: "vae-encoder-moments",
  match(graph: GraphIndex): SampledLatentMatch[] {
    const matches: SampledLatentMatch[] = [];
    for (const random of graph.nodes) {
      if (!RANDOM_OPS.has(random.opType) || random.domain) continue;
      matches.push({ random, ...traceSampling(graph, random) });
    }
    return matches;
  },
  check(_graph: GraphIndex, match: SampledLatentMatch): true | string {
    if (typeof match.moments === "string") return match.moments;
    if (match.output === "") return "the sample is not a graph output";
    return true;
  },
  rewrite(edit: GraphEdit, match: SampledLatentMatch, names: MomentOutputs): void {
    if (typeof match.moments === "string") throw new Error(`cannot rewrite: ${match.moments}`);
    const type = outputFloatType(edit, match.output);
    edit.removeOutput(match.output);
    edit.addOutput(edit.external(match.moments.mean), names.mean, type);
    edit.addOutput(edit.external(match.moments.logvar), names.logvar, type);
  },
};

function traceSampling(
  graph: GraphIndex,
  random: NodeProto,
): { output: string; moments: SampledLatentMatch["moments"] } {
  let noise = random.output[0];
  for (let consumers = graph.consumersOf(noise); ; consumers = graph.consumersOf(noise)) {
    if (consumers.length !== 1) return { output: "", moments: "the noise has several readers" };
    if (consumers[0].opType !== "Cast") break;
    noise = consumers[0].output[0];
  }
  const scale = graph.consumersOf(noise)[0];
  if (scale.opType !== "Mul") return { output: "", moments: "the noise is not scaled by a Mul" };
  const std = scale.input[0] === noise ? scale.input[1] : scale.input[0];
  const shift = graph.consumersOf(scale.output[0]);
  if (shift.length !== 1 || shift[0].opType !== "Add")
    return { output: "", moments: "the scaled noise is not added to a mean" };
  const add = shift[0];
  const mean = add.input[0] === scale.output[0] ? add.input[1] : add.input[0];
  const output = graph.isGraphOutput(add.output[0]) ? add.output[0] : "";
  const logvar = logVarianceOf(graph, std);
  if (logvar === undefined) return { output, moments: "the noise scale is not exp(0.5 * logvar)" };
  return { output, moments: { mean, logvar } };
}

/** x from std = Exp(Mul(x, 0.5)) or Exp(Div(x, 2)). */
function logVarianceOf(graph: GraphIndex, std: string): string | undefined {
  const exp = graph.producer(std);
  if (exp?.opType !== "Exp") return undefined;
  const half = graph.producer(exp.input[0]);
  if (!half || (half.opType !== "Mul" && half.opType !== "Div")) return undefined;
  const orders: Array<[string, string]> = [[half.input[0], half.input[1]]];
  if (half.opType === "Mul") orders.push([half.input[1], half.input[0]]);
  for (const [data, other] of orders) {
    const value = graph.constantNumbers(other);
    if (value?.length !== 1) continue;
    if ((half.opType === "Mul" && value[0] === 0.5) || (half.opType === "Div" && value[0] === 2))
      return data;
  }
  return undefined;
}

/** The element type of a graph output (float16 exports keep float16 outputs). */
export function outputFloatType(edit: GraphEdit, name: string): "float32" | "float16" {
  const output = edit.model.graph.output.find((o) => o.name === name);
  return output?.type?.tensorType?.elemType === TensorDataType.FLOAT16 ? "float16" : "float32";
}
