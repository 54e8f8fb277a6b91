/**
 * The sampler step as a graph, for denoising loops whose latents stay on the device. A traced
 * schedule (schedulers/linear-trace.ts) writes every sample and model input as a weighted sum of
 * sources: the starting sample, each step's guided model output and each noise draw. The
 * device keeps the sources as the rows of one tensor (the bank); each step stores the new
 * sources in their rows and forms the next model input (or the final latents) from them.
 *
 *   bank          (S, N)       sources so far; rows not yet written are zero
 *   model_output  (G*B, C, H, W) the UNet's output; G = 2 with guidance (unconditional first)
 *   guidance_scale (1)         with guidance only
 *   output_weights (S, 1)      one-hot: the row the guided output goes to
 *   noise         (D, N)       this step's noise draws (graphs built with noise only)
 *   noise_weights (S, D)       one-hot columns: the rows the draws go to
 *   combine_weights (R, S)     weights of each result row
 *   combined_shape (4)         int64: the shape of the results, (R*B, C, H, W)
 * ->
 *   bank_out      (S, N)       the bank with this step's sources written
 *   combined      combined_shape   combine_weights x bank_out (R copies of the next model input
 *                              for guidance, or the final latents)
 *   finite_check  (1)          0 when every value of combined is finite, else NaN
 *
 * N = B*C*H*W. Everything is float32: the weights are float64 on the host and only their
 * float32 rounding reaches the device, as the host loop rounds its samples.
 */
import { GraphBuilder, type Value } from "../onnx/builder.js";

export interface SamplerStepOptions {
  /** The model output holds the unconditional and conditional halves (classifier-free guidance). */
  readonly guided: boolean;
  /** The step draws noise (ancestral and SDE samplers). */
  readonly noise: boolean;
}

/** Changes whenever the graph does (part of its cache key). */
export const SAMPLER_STEP_FORMAT = 2;

export const SAMPLER_STEP_IO = {
  bank: "bank",
  modelOutput: "model_output",
  guidanceScale: "guidance_scale",
  outputWeights: "output_weights",
  noise: "noise",
  noiseWeights: "noise_weights",
  combineWeights: "combine_weights",
  combinedShape: "combined_shape",
  bankOut: "bank_out",
  combined: "combined",
  finiteCheck: "finite_check",
} as const;

export function buildSamplerStep(options: SamplerStepOptions): GraphBuilder {
  const io = SAMPLER_STEP_IO;
  const g = new GraphBuilder("float32");
  const bank = g.input(io.bank, "float32", ["sources", "elements"]);
  const modelOutput = g.input(io.modelOutput, "float32", ["rows", "channels", "height", "width"]);
  const scale = options.guided ? g.input(io.guidanceScale, "float32", [1]) : undefined;
  const outputWeights = g.input(io.outputWeights, "float32", ["sources", 1]);
  const noise = options.noise ? g.input(io.noise, "float32", ["draws", "elements"]) : undefined;
  const noiseWeights = options.noise
    ? g.input(io.noiseWeights, "float32", ["sources", "draws"])
    : undefined;
  const combineWeights = g.input(io.combineWeights, "float32", ["results", "sources"]);
  const combinedShape = g.input(io.combinedShape, "int64", [4]);

  // Guidance: uncond + scale * (cond - uncond), as one row (1, N).
  let output: Value;
  if (scale) {
    const [uncond, cond] = g.split(g.reshape(modelOutput, [2, -1]), [1, 1], 0);
    output = g.add(uncond, g.mul(scale, g.sub(cond, uncond)));
  } else {
    output = g.reshape(modelOutput, [1, -1]);
  }
  // (S, 1) * (1, N): the output in its row, zeros elsewhere.
  let bankOut = g.add(bank, g.mul(outputWeights, output));
  if (noise && noiseWeights) bankOut = g.add(bankOut, g.matMul(noiseWeights, noise));
  const combined = g.reshape(g.matMul(combineWeights, bankOut), combinedShape);
  g.output(bankOut, io.bankOut, "float32", ["sources", "elements"]);
  g.output(combined, io.combined, "float32");
  // 0 * x is 0 for finite x and NaN for NaN or infinity, so the mean is NaN exactly when the
  // result holds a non-finite value: one number per step tells the host where a loop broke.
  const check = g.reduceMean(g.mul(g.reshape(combined, [1, -1]), g.float(0)), [1], false);
  g.output(check, io.finiteCheck, "float32", [1]);
  return g;
}
