/**
 * diffusers' ONNX export folders (`OnnxStableDiffusionPipeline`: model_index.json,
 * text_encoder/, unet/, vae_encoder/, vae_decoder/, tokenizer/, scheduler/) as pipeline
 * components. The exported graphs are rewritten where they cannot reproduce the reference
 * pipelines as they are (see src/patch/):
 * - the UNet gets token reduction for the requested settings (one patched model per settings);
 * - the text encoder gets an output for the hidden state clip skip asks for;
 * - the VAE encoder outputs the latent distribution instead of a sample drawn inside the graph
 *   with onnxruntime's random numbers, so img2img draws its noise from the pipeline's source.
 *
 * Models whose weights sit in external data files (`unet/weights.pb`) are patched without
 * loading those weights: the patched graph is written to the model cache and the weight files
 * are hard-linked (or, across file systems, copied) next to it, since onnxruntime only reads
 * external data from the model's own folder.
 */
import { copyFileSync, existsSync, linkSync, mkdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { readModel, writeModel } from "../onnx/model-io.js";
import {
  decodeModel,
  encodeModel,
  type ModelProto,
  TensorDataType,
  type ValueInfoProto,
} from "../onnx/proto.js";
import { ATTENTION_RULES, applyRules } from "../patch/apply-rules.js";
import { GraphEdit } from "../patch/graph-edit.js";
import { GraphIndex } from "../patch/graph-index.js";
import {
  clipHiddenStatesRule,
  type HiddenStatesMatch,
  LAST_HIDDEN_STATE,
} from "../patch/rules/clip-hidden-states.js";
import { vaeEncoderMomentsRule } from "../patch/rules/vae-encoder-moments.js";
import { unetSignature } from "../patch/unet-levels.js";
import { type ReductionSettings, reducesNothing } from "../reduce/options.js";
import type { Device } from "../runtime/devices.js";
import { createSession, type OrtSession, type OrtTensor, ort } from "../runtime/session.js";
import type { ClipTokenizer } from "../tokenizers/clip-tokenizer.js";
import { loadClipTokenizer } from "../tokenizers/load-folder.js";
import { float16ArrayToFloat32, float32ArrayToFloat16 } from "../util/float16.js";
import { isJsonObject, type JsonObject, readConfigFile } from "../weights/config-json.js";
import type {
  HostTensor,
  TextEncoderComponent,
  TextEncoderOutputs,
  TextEncoderRequest,
  UnetComponent,
  UnetInputs,
  VaeComponent,
} from "./components.js";
import { fileIdentity, hashKey, ModelCache, stableStringify } from "./model-cache.js";

export interface OnnxFolderOptions {
  readonly device?: Device;
  readonly intraOpThreads?: number;
  /** Where patched models with external weights are written (default: the user's cache). */
  readonly cache?: ModelCache;
}

/** What the pipeline needs from a loaded ONNX folder. */
export interface OnnxFolder {
  readonly family: "sd1" | "sd2";
  readonly label: string;
  readonly tokenizers: readonly ClipTokenizer[];
  readonly textEncoders: readonly TextEncoderComponent[];
  /** The UNet with `reduction` patched in (undefined or nothing to reduce: the export as is). */
  unet(reduction: ReductionSettings | undefined): Promise<UnetComponent>;
  readonly vae: VaeComponent;
  readonly schedulerConfig: Readonly<Record<string, unknown>>;
  readonly forceZerosForEmptyPrompt: boolean;
  readonly latentChannels: number;
  readonly vaeScale: number;
  readonly defaultSize: number;
  release(): Promise<void>;
}

/** The scaling factor diffusers' ONNX pipelines use when the folder has no VAE config. */
const SD_VAE_SCALING_FACTOR = 0.18215;
/** Names the rewritten graphs give their new outputs (the builders' names). */
export const ONNX_FOLDER_IO = Object.freeze({
  skipHiddenState: "skip_hidden_state",
  latentMean: "latent_mean",
  latentLogvar: "latent_logvar",
});

/** Opens a diffusers ONNX export folder; sessions are created when first needed. */
export async function openOnnxFolder(
  dir: string,
  options: OnnxFolderOptions = {},
): Promise<OnnxFolder> {
  const index = readConfigFile(join(dir, "model_index.json"));
  const className = typeof index._class_name === "string" ? index._class_name : "";
  if (!className.startsWith("Onnx"))
    throw new Error(
      `${dir}: model_index.json names ${className || "no pipeline class"}, not an ONNX pipeline (OnnxStableDiffusionPipeline)`,
    );
  if (/XL/.test(className))
    throw new Error(`${dir}: ${className} folders are not supported yet; use the diffusers folder`);
  for (const part of ["text_encoder", "unet", "vae_decoder"]) {
    if (!existsSync(join(dir, part, "model.onnx")))
      throw new Error(`${dir}: ${part}/model.onnx is missing`);
  }
  const sessionOptions = { device: options.device, intraOpThreads: options.intraOpThreads };
  const files = (part: string) =>
    new OnnxModelFile(join(dir, part, "model.onnx"), sessionOptions, options.cache);

  const unetFile = files("unet");
  const unetStructure = unetFile.structure();
  const contextWidth = lastDim(
    unetStructure.graph.input.find((i) => i.name === "encoder_hidden_states"),
  );
  const family = contextWidth === 1024 ? "sd2" : "sd1";
  const schedulerConfig = readConfigFile(join(dir, "scheduler", "scheduler_config.json"));
  const vaeConfigPath = join(dir, "vae_decoder", "config.json");
  const vaeConfig: JsonObject = existsSync(vaeConfigPath) ? readConfigFile(vaeConfigPath) : {};
  const scalingFactor =
    typeof vaeConfig.scaling_factor === "number" ? vaeConfig.scaling_factor : SD_VAE_SCALING_FACTOR;
  const shiftFactor = typeof vaeConfig.shift_factor === "number" ? vaeConfig.shift_factor : 0;

  const textEncoder = new OnnxTextEncoder(files("text_encoder"));
  const unets = new Map<string, Promise<OnnxUnet>>();
  const vae = new OnnxVae(
    scalingFactor,
    shiftFactor,
    files("vae_decoder"),
    existsSync(join(dir, "vae_encoder", "model.onnx")) ? files("vae_encoder") : undefined,
  );
  const sampleChannels = unetStructure.graph.input.find((i) => i.name === "sample");
  return {
    family,
    label: basename(dir),
    tokenizers: [loadClipTokenizer(join(dir, "tokenizer"))],
    textEncoders: [textEncoder],
    unet(reduction) {
      const active = reduction && !reducesNothing(reduction) ? reduction : undefined;
      const key = active ? stableStringify(active) : "";
      let unet = unets.get(key);
      if (!unet) {
        unet = (async () => {
          const session = active
            ? await unetFile.variantSession(`reduction:${key}`, (model) => {
                applyRules(model, ATTENTION_RULES, active, unetFile.path);
              })
            : await unetFile.session();
          return new OnnxUnet(session, unetStructure);
        })();
        unets.set(key, unet);
        unet.catch(() => unets.delete(key));
      }
      return unet;
    },
    vae,
    schedulerConfig,
    forceZerosForEmptyPrompt: index.force_zeros_for_empty_prompt === true,
    latentChannels: dimValue(sampleChannels, 1) ?? 4,
    vaeScale: 8,
    defaultSize:
      family === "sd2" &&
      isJsonObject(schedulerConfig) &&
      schedulerConfig.prediction_type === "v_prediction"
        ? 768
        : 512,
    async release() {
      await textEncoder.release();
      for (const unet of unets.values()) await (await unet).release();
      unets.clear();
      await vae.release();
    },
  };
}

// ---- model files and their rewritten variants -----------------------------------------------

interface SessionSettings {
  readonly device?: Device;
  readonly intraOpThreads?: number;
}

/** One exported model file: its session as is, and sessions of rewritten copies. */
export class OnnxModelFile {
  private bytes?: Uint8Array;
  private externalFiles?: string[];

  constructor(
    readonly path: string,
    private readonly sessionSettings: SessionSettings,
    private readonly cache?: ModelCache,
  ) {}

  /** The graph, without the weights of external data files (a fresh copy each call). */
  structure(): ModelProto {
    if (!this.bytes) {
      const model = readModel(this.path, false);
      this.externalFiles = externalLocations(model);
      this.bytes = encodeModel(model);
    }
    return decodeModel(this.bytes, this.path);
  }

  session(): Promise<OrtSession> {
    return createSession(this.path, this.sessionSettings);
  }

  /** A session of the model after `edit`; models with external data go through the cache. */
  async variantSession(key: string, edit: (model: ModelProto) => void): Promise<OrtSession> {
    const model = this.structure();
    edit(model);
    const external = this.externalFiles ?? [];
    if (external.length === 0) return createSession(encodeModel(model), this.sessionSettings);
    const cache = this.cache ?? new ModelCache();
    const description = {
      kind: "onnx-export-variant",
      source: fileIdentity(this.path),
      external: external.map((file) => fileIdentity(join(dirname(this.path), file))),
      variant: key,
    };
    const entry = await cache.getOrBuild(hashKey(description), description, (modelPath) => {
      writeModel(model, modelPath, "never");
      for (const file of external) {
        const target = join(dirname(modelPath), file);
        mkdirSync(dirname(target), { recursive: true });
        try {
          linkSync(join(dirname(this.path), file), target);
        } catch {
          copyFileSync(join(dirname(this.path), file), target);
        }
      }
    });
    return createSession(entry.modelPath, this.sessionSettings);
  }
}

function externalLocations(model: ModelProto): string[] {
  const locations = new Set<string>();
  for (const tensor of model.graph.initializer ?? []) {
    if (tensor.dataLocation !== 1) continue;
    const location = tensor.externalData?.find((e) => e.key === "location")?.value;
    if (location) locations.add(location);
  }
  return [...locations];
}

// ---- tensors --------------------------------------------------------------------------------

function elementType(info: ValueInfoProto | undefined): number {
  return info?.type?.tensorType?.elemType ?? TensorDataType.FLOAT;
}

function dimValue(info: ValueInfoProto | undefined, axis: number): number | undefined {
  const value = info?.type?.tensorType?.shape?.dim[axis]?.dimValue;
  return value === undefined ? undefined : Number(value);
}

function lastDim(info: ValueInfoProto | undefined): number | undefined {
  const dims = info?.type?.tensorType?.shape?.dim;
  return dims && dims.length > 0 ? dimValue(info, dims.length - 1) : undefined;
}

/** A float host tensor as the input type the graph declares (float32, float16, int64). */
function feed(info: ValueInfoProto | undefined, data: Float32Array, dims: readonly number[]) {
  switch (elementType(info)) {
    case TensorDataType.FLOAT16:
      return new ort.Tensor("float16", float32ArrayToFloat16(data), dims);
    case TensorDataType.INT64:
      return new ort.Tensor(
        "int64",
        BigInt64Array.from(data, (v) => BigInt(Math.round(v))),
        dims,
      );
    case TensorDataType.INT32:
      return new ort.Tensor("int32", Int32Array.from(data, Math.round), dims);
    case TensorDataType.DOUBLE:
      return new ort.Tensor("float64", Float64Array.from(data), dims);
    default:
      return new ort.Tensor("float32", data, dims);
  }
}

function hostOutput(outputs: Record<string, OrtTensor>, name: string): HostTensor {
  const tensor = outputs[name];
  if (!tensor)
    throw new Error(
      `the model has no output "${name}" (it has ${Object.keys(outputs).join(", ")})`,
    );
  if (tensor.type === "float32") return { data: tensor.data as Float32Array, dims: tensor.dims };
  if (tensor.type === "float16")
    return { data: float16ArrayToFloat32(tensor.data as Uint16Array), dims: tensor.dims };
  throw new Error(`output "${name}" is ${tensor.type}, expected a float tensor`);
}

// ---- components -----------------------------------------------------------------------------

/** The text encoder; a clip-skip request gets a copy of the graph with that hidden state. */
class OnnxTextEncoder implements TextEncoderComponent {
  readonly hiddenSize: number;
  readonly layers: number;
  private readonly sessions = new Map<string, Promise<OrtSession>>();
  private readonly inputIds: ValueInfoProto;
  private readonly pooledName: string | undefined;

  constructor(private readonly file: OnnxModelFile) {
    const model = file.structure();
    const graph = new GraphIndex(model.graph);
    const match = clipHiddenStatesRule.match(graph)[0];
    const verdict = match
      ? clipHiddenStatesRule.check(graph, match)
      : "no last_hidden_state output";
    if (verdict !== true) throw new Error(`${file.path}: not a CLIP text encoder: ${verdict}`);
    const states = (match as HiddenStatesMatch).hiddenStates as readonly string[];
    this.layers = states.length - 1;
    const last = model.graph.output.find((o) => o.name === LAST_HIDDEN_STATE);
    this.hiddenSize = lastDim(last) ?? 0;
    const input = model.graph.input.find((i) => i.name === "input_ids") ?? model.graph.input[0];
    this.inputIds = input;
    this.pooledName = model.graph.output.find(
      (o) => o.name === "pooler_output" || o.name === "text_embeds",
    )?.name;
  }

  private sessionFor(request: TextEncoderRequest): Promise<OrtSession> {
    const fromEnd = request.hiddenStateFromEnd;
    const key = fromEnd ? `${fromEnd}:${request.finalLayerNorm ? 1 : 0}` : "";
    let session = this.sessions.get(key);
    if (!session) {
      session = fromEnd
        ? this.file.variantSession(`hidden-state:${key}`, (model) => {
            const edit = new GraphEdit(model);
            const match = clipHiddenStatesRule.match(edit.graph)[0];
            clipHiddenStatesRule.rewrite(edit, match, {
              fromEnd,
              finalLayerNorm: request.finalLayerNorm === true,
              output: ONNX_FOLDER_IO.skipHiddenState,
            });
            edit.commit();
          })
        : this.file.session();
      this.sessions.set(key, session);
      session.catch(() => this.sessions.delete(key));
    }
    return session;
  }

  async encode(
    inputIds: readonly number[][],
    request: TextEncoderRequest,
  ): Promise<TextEncoderOutputs> {
    if (inputIds.length === 0) throw new Error("encode: no token sequences given");
    const session = await this.sessionFor(request);
    const batch = inputIds.length;
    const length = inputIds[0].length;
    const flat = inputIds.flat();
    const ids =
      elementType(this.inputIds) === TensorDataType.INT32
        ? new ort.Tensor("int32", Int32Array.from(flat), [batch, length])
        : new ort.Tensor(
            "int64",
            BigInt64Array.from(flat, (v) => BigInt(v)),
            [batch, length],
          );
    const out = await session.run({ [this.inputIds.name]: ids });
    return {
      lastHiddenState: hostOutput(out, LAST_HIDDEN_STATE),
      skipHiddenState: request.hiddenStateFromEnd
        ? hostOutput(out, ONNX_FOLDER_IO.skipHiddenState)
        : undefined,
      pooled: this.pooledName ? hostOutput(out, this.pooledName) : undefined,
    };
  }

  async release(): Promise<void> {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const session of sessions) await (await session).release();
  }
}

class OnnxUnet implements UnetComponent {
  private readonly inputs: Map<string, ValueInfoProto>;
  private readonly sample: string;
  private readonly timestep: string;
  private readonly output: string;

  constructor(
    private readonly session: OrtSession,
    structure: ModelProto,
  ) {
    const signature = unetSignature(structure.graph, "unet/model.onnx");
    this.sample = signature.sample;
    this.timestep = signature.timestep;
    this.inputs = new Map(structure.graph.input.map((i) => [i.name, i]));
    this.output = structure.graph.output[0].name;
  }

  async predict(inputs: UnetInputs): Promise<HostTensor> {
    const info = (name: string) => this.inputs.get(name);
    const timestepInfo = info(this.timestep);
    const timestepRank = timestepInfo?.type?.tensorType?.shape?.dim.length;
    // Exports take the timestep as [batch], [1] or a scalar; the batch shares one timestep.
    const timestep =
      timestepRank === 0
        ? feed(timestepInfo, inputs.timestep.subarray(0, 1), [])
        : dimValue(timestepInfo, 0) === 1
          ? feed(timestepInfo, inputs.timestep.subarray(0, 1), [1])
          : feed(timestepInfo, inputs.timestep, [inputs.timestep.length]);
    const feeds: Record<string, OrtTensor> = {
      [this.sample]: feed(info(this.sample), inputs.sample.data, inputs.sample.dims),
      [this.timestep]: timestep,
      encoder_hidden_states: feed(
        info("encoder_hidden_states"),
        inputs.encoderHiddenStates.data,
        inputs.encoderHiddenStates.dims,
      ),
    };
    if (inputs.textEmbeds && this.inputs.has("text_embeds"))
      feeds.text_embeds = feed(info("text_embeds"), inputs.textEmbeds.data, inputs.textEmbeds.dims);
    if (inputs.timeIds && this.inputs.has("time_ids"))
      feeds.time_ids = feed(info("time_ids"), inputs.timeIds.data, inputs.timeIds.dims);
    return hostOutput(await this.session.run(feeds), this.output);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

class OnnxVae implements VaeComponent {
  private decoder?: Promise<{ session: OrtSession; input: ValueInfoProto; output: string }>;
  private encoder?: Promise<{ session: OrtSession; input: ValueInfoProto; split: boolean }>;

  constructor(
    readonly scalingFactor: number,
    readonly shiftFactor: number,
    private readonly decoderFile: OnnxModelFile,
    private readonly encoderFile: OnnxModelFile | undefined,
  ) {}

  async decode(latents: HostTensor): Promise<HostTensor> {
    this.decoder ??= (async () => {
      const graph = this.decoderFile.structure().graph;
      return {
        session: await this.decoderFile.session(),
        input: graph.input[0],
        output: graph.output[0].name,
      };
    })();
    const { session, input, output } = await this.decoder;
    const out = await session.run({ [input.name]: feed(input, latents.data, latents.dims) });
    return hostOutput(out, output);
  }

  async encode(images: HostTensor): Promise<{ mean: HostTensor; logvar: HostTensor }> {
    const file = this.encoderFile;
    if (!file) throw new Error("this ONNX folder has no vae_encoder/model.onnx; img2img needs it");
    this.encoder ??= (async () => {
      const structure = file.structure();
      const graph = new GraphIndex(structure.graph);
      const match = vaeEncoderMomentsRule.match(graph)[0];
      const input = structure.graph.input[0];
      if (!match) {
        // Exports that output the moments themselves (B, 2 * latent channels, h, w).
        if (structure.graph.output.some((o) => o.name === "latent_parameters"))
          return { session: await file.session(), input, split: true };
        throw new Error(`${file.path}: no latent sampling (RandomNormalLike) found to rewrite`);
      }
      const verdict = vaeEncoderMomentsRule.check(graph, match);
      if (verdict !== true) throw new Error(`${file.path}: ${verdict}`);
      const session = await file.variantSession("latent-moments", (model) => {
        const edit = new GraphEdit(model);
        const fresh = vaeEncoderMomentsRule.match(edit.graph)[0];
        vaeEncoderMomentsRule.rewrite(edit, fresh, {
          mean: ONNX_FOLDER_IO.latentMean,
          logvar: ONNX_FOLDER_IO.latentLogvar,
        });
        edit.commit();
      });
      return { session, input, split: false };
    })();
    const { session, input, split } = await this.encoder;
    const out = await session.run({ [input.name]: feed(input, images.data, images.dims) });
    if (!split)
      return {
        mean: hostOutput(out, ONNX_FOLDER_IO.latentMean),
        logvar: hostOutput(out, ONNX_FOLDER_IO.latentLogvar),
      };
    return splitMoments(hostOutput(out, "latent_parameters"));
  }

  async release(): Promise<void> {
    for (const part of [this.decoder, this.encoder]) if (part) await (await part).session.release();
    this.decoder = undefined;
    this.encoder = undefined;
  }
}

/** (B, 2C, h, w) moments -> mean and log-variance clamped to [-30, 20], as diffusers does. */
function splitMoments(moments: HostTensor): { mean: HostTensor; logvar: HostTensor } {
  const [batch, channels2, height, width] = moments.dims;
  const channels = channels2 / 2;
  const plane = channels * height * width;
  const mean = new Float32Array(batch * plane);
  const logvar = new Float32Array(batch * plane);
  for (let b = 0; b < batch; b++) {
    mean.set(moments.data.subarray(b * 2 * plane, b * 2 * plane + plane), b * plane);
    const source = moments.data.subarray(b * 2 * plane + plane, (b + 1) * 2 * plane);
    for (let i = 0; i < plane; i++) logvar[b * plane + i] = Math.min(20, Math.max(-30, source[i]));
  }
  const dims = [batch, channels, height, width];
  return { mean: { data: mean, dims }, logvar: { data: logvar, dims } };
}
