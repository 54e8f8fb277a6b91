/**
 * Exported models name and type their inputs and outputs in their own ways (`latent_sample`,
 * int32 token ids, float16 tensors, a scalar timestep). These edits give them the I/O contract
 * of the models this project builds, so the same pipeline components run both: float32 tensors
 * (int64 token ids) with the builders' names. Conversions happen inside the graph, with Casts
 * and reshapes, so nothing changes numerically for float32 exports.
 */
import { attr, type Value } from "../onnx/builder.js";
import { type ModelProto, TensorDataType, type ValueInfoProto } from "../onnx/proto.js";
import { type ElementType, elementTypeOf } from "../onnx/tensor-data.js";
import { GraphEdit } from "./graph-edit.js";
import { type MomentOutputs, vaeEncoderMomentsRule } from "./rules/vae-encoder-moments.js";
import { unetSignature } from "./unet-levels.js";

export interface UnetIo {
  readonly sample: string;
  readonly timestep: string;
  readonly encoderHiddenStates: string;
  readonly textEmbeds: string;
  readonly timeIds: string;
  readonly output: string;
}

export interface TextEncoderIo {
  readonly input: string;
}

export interface VaeDecoderIo {
  readonly input: string;
  readonly output: string;
}

export interface VaeEncoderIo extends MomentOutputs {
  readonly input: string;
}

/** Input, outputs of an export whose names and types already match change nothing. */
function finish(edit: GraphEdit): boolean {
  if (!edit.pending) return false;
  edit.commit();
  return true;
}

/** Returns true when the model was changed. */
export function conformUnetIo(model: ModelProto, io: UnetIo, label = "unet"): boolean {
  const signature = unetSignature(model.graph, label);
  const edit = new GraphEdit(model);
  floatInput(edit, signature.sample, io.sample);
  timestepInput(edit, signature.timestep, io.timestep);
  const inputs = model.graph.input.map((i) => i.name);
  const context =
    inputs.find((n) => n === "encoder_hidden_states") ??
    model.graph.input.find((i) => i.type?.tensorType?.shape?.dim.length === 3)?.name;
  if (!context) throw new Error(`${label}: no encoder_hidden_states input`);
  floatInput(edit, context, io.encoderHiddenStates);
  if (inputs.includes("text_embeds")) floatInput(edit, "text_embeds", io.textEmbeds);
  if (inputs.includes("time_ids")) floatInput(edit, "time_ids", io.timeIds);
  floatOutput(edit, model.graph.output[0].name, io.output);
  return finish(edit);
}

export function conformTextEncoderIo(model: ModelProto, io: TextEncoderIo): boolean {
  const edit = new GraphEdit(model);
  const input =
    model.graph.input.find((i) => i.name === "input_ids") ?? inputsOf(model.graph.input, edit)[0];
  const type = typeOf(input);
  if (type !== "int64")
    edit.replaceInput(input.name, "int64", ["batch", "sequence"], (ids) =>
      edit.builder.cast(ids, type),
    );
  edit.rename("input", input.name, io.input);
  for (const output of model.graph.output) floatOutput(edit, output.name, output.name);
  return finish(edit);
}

export function conformVaeDecoderIo(model: ModelProto, io: VaeDecoderIo): boolean {
  const edit = new GraphEdit(model);
  floatInput(edit, inputsOf(model.graph.input, edit)[0].name, io.input);
  floatOutput(edit, model.graph.output[0].name, io.output);
  return finish(edit);
}

/**
 * The VAE encoder gives the latent distribution: the in-graph sampling is replaced by the
 * mean and log-variance (vae-encoder-moments), or, for exports that output the moments
 * (`latent_parameters`, B x 2C x h x w), they are split and the log-variance clamped to
 * [-30, 20] as diffusers' DiagonalGaussianDistribution does.
 */
export function conformVaeEncoderIo(model: ModelProto, io: VaeEncoderIo, label: string): void {
  const edit = new GraphEdit(model);
  const [match] = vaeEncoderMomentsRule.match(edit.graph);
  if (match) {
    const verdict = vaeEncoderMomentsRule.check(edit.graph, match);
    if (verdict !== true) throw new Error(`${label}: ${verdict}`);
    vaeEncoderMomentsRule.rewrite(edit, match, { mean: io.mean, logvar: io.logvar });
  } else if (edit.graph.isGraphOutput("latent_parameters")) {
    const g = edit.builder;
    const moments = edit.external("latent_parameters");
    const half = g.div(g.shape(moments, 1, 2), g.int64([2]));
    const [mean, logvar] = g.opN("Split", [moments, g.concat([half, half], 0)], 2, {
      axis: attr.int(1),
    });
    const type = typeOf(model.graph.output.find((o) => o.name === "latent_parameters"));
    const clamped = g.op("Clip", [
      logvar,
      g.float(-30, [], floatType(type)),
      g.float(20, [], floatType(type)),
    ]);
    edit.removeOutput("latent_parameters");
    edit.addOutput(mean, io.mean, type);
    edit.addOutput(clamped, io.logvar, type);
  } else {
    throw new Error(
      `${label}: no latent sampling (RandomNormalLike) and no latent_parameters output; cannot read the latent distribution`,
    );
  }
  edit.commit();
  const io2 = new GraphEdit(model);
  floatInput(io2, inputsOf(model.graph.input, io2)[0].name, io.input);
  for (const name of [io.mean, io.logvar]) floatOutput(io2, name, name);
  finish(io2);
}

// ---- helpers --------------------------------------------------------------------------------

function inputsOf(inputs: readonly ValueInfoProto[], edit: GraphEdit): ValueInfoProto[] {
  return inputs.filter((i) => edit.graph.isGraphInput(i.name));
}

function typeOf(info: ValueInfoProto | undefined): ElementType {
  return elementTypeOf(info?.type?.tensorType?.elemType ?? TensorDataType.FLOAT);
}

function floatType(type: ElementType): "float32" | "float16" {
  return type === "float16" ? "float16" : "float32";
}

function shapeOf(info: ValueInfoProto | undefined): Array<number | string> | undefined {
  return info?.type?.tensorType?.shape?.dim.map((d, i) =>
    d.dimValue !== undefined ? Number(d.dimValue) : (d.dimParam ?? `dim_${i}`),
  );
}

/** A float input fed as float32 under `name`. */
function floatInput(edit: GraphEdit, current: string, name: string): void {
  const info = edit.model.graph.input.find((i) => i.name === current);
  const type = typeOf(info);
  if (type !== "float32")
    edit.replaceInput(current, "float32", shapeOf(info), (x) => edit.builder.cast(x, type));
  edit.rename("input", current, name);
}

/** A float output read back as float32 under `name`. */
function floatOutput(edit: GraphEdit, current: string, name: string): void {
  const info = edit.model.graph.output.find((o) => o.name === current);
  const type = typeOf(info);
  if (type === "float16")
    edit.replaceOutput(
      current,
      edit.builder.cast(edit.external(current), "float32"),
      "float32",
      shapeOf(info),
    );
  edit.rename("output", current, name);
}

/**
 * The timestep fed as float32 [batch] (one value per row, all equal in a pipeline call). Exports
 * that take a scalar or [1] get the first value; integer exports get it truncated, as numpy's
 * cast in diffusers' ONNX pipeline does.
 */
function timestepInput(edit: GraphEdit, current: string, name: string): void {
  const info = edit.model.graph.input.find((i) => i.name === current);
  const type = typeOf(info);
  const dims = info?.type?.tensorType?.shape?.dim ?? [];
  const single = dims.length === 0 || (dims.length === 1 && Number(dims[0].dimValue) === 1);
  if (type !== "float32" || single) {
    edit.replaceInput(current, "float32", ["batch"], (t) => {
      const g = edit.builder;
      let value: Value = t;
      if (dims.length === 0) value = g.gather(t, g.int64([0], []), 0);
      else if (single) value = g.slice(t, [0], [1], [0]);
      return type === "float32" ? g.op("Identity", [value]) : g.cast(value, type);
    });
  }
  edit.rename("input", current, name);
}
