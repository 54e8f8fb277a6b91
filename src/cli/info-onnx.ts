/**
 * `todo-sd info` for models exported to ONNX by other tools: what the files themselves tell
 * (inputs, outputs, operators, initializers) and, for a UNet, the self-attention blocks the patch
 * rules recognise, by spatial level. Weights in external data files are never loaded.
 */
import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { readConfigFile } from "../configs/config-json.js";
import { describeReduction } from "../index.js";
import { readModel } from "../onnx/model-io.js";
import { type ModelProto, TensorDataType, type ValueInfoProto } from "../onnx/proto.js";
import { ATTENTION_RULES, findSelfAttention } from "../patch/apply-rules.js";
import { GraphIndex } from "../patch/graph-index.js";
import { unetSignature } from "../patch/unet-levels.js";
import { onnxDefaultSide, onnxUnetFamily } from "../pipelines/onnx-folder.js";
import { METADATA_PREFIX, reductionFromMetadata } from "../reduce/options.js";
import { elementCount } from "../util/random.js";
import type { ModelFamily } from "../util/vocabulary.js";
import {
  type ComponentInfo,
  countParameters,
  levelInfos,
  type ModelInfo,
  sizedReport,
  type TensorIo,
  type UnetFindings,
} from "./info-model.js";

const ELEMENT_TYPES: Readonly<Record<number, string>> = Object.freeze({
  [TensorDataType.FLOAT]: "float32",
  [TensorDataType.UINT8]: "uint8",
  [TensorDataType.INT8]: "int8",
  [TensorDataType.UINT16]: "uint16",
  [TensorDataType.INT16]: "int16",
  [TensorDataType.INT32]: "int32",
  [TensorDataType.INT64]: "int64",
  [TensorDataType.STRING]: "string",
  [TensorDataType.BOOL]: "bool",
  [TensorDataType.FLOAT16]: "float16",
  [TensorDataType.DOUBLE]: "float64",
  [TensorDataType.UINT32]: "uint32",
  [TensorDataType.UINT64]: "uint64",
  [TensorDataType.BFLOAT16]: "bfloat16",
});

/** The parts of diffusers' ONNX export folders, in the order the pipeline uses them. */
const FOLDER_PARTS = ["text_encoder", "text_encoder_2", "unet", "vae_encoder", "vae_decoder"];

type Size = { width: number; height: number };

function elementType(type: number | undefined): string {
  return type === undefined ? "?" : (ELEMENT_TYPES[type] ?? `type ${type}`);
}

function tensorIo(info: ValueInfoProto): TensorIo {
  const tensor = info.type?.tensorType;
  return {
    name: info.name,
    type: elementType(tensor?.elemType),
    shape: (tensor?.shape?.dim ?? []).map((d) =>
      d.dimValue !== undefined ? Number(d.dimValue) : (d.dimParam ?? "?"),
    ),
  };
}

function onnxComponent(
  name: string,
  path: string,
  model: ModelProto,
  library: string | null,
  className: string | null,
): ComponentInfo {
  const graph = model.graph;
  const initializers = graph.initializer ?? [];
  const initializerNames = new Set(initializers.map((t) => t.name));
  const { parameters, dtypes } = countParameters(
    initializers.map((tensor) => ({
      type: elementType(tensor.dataType),
      count: elementCount(tensor.dims.map(Number)),
    })),
  );
  const opTypes: Record<string, number> = {};
  for (const node of graph.node) opTypes[node.opType] = (opTypes[node.opType] ?? 0) + 1;
  const opset = model.opsetImport.find((o) => !o.domain || o.domain === "ai.onnx")?.version;
  return {
    name,
    library,
    className,
    parameters,
    dtypes,
    file: path,
    opset: opset === undefined ? undefined : Number(opset),
    nodes: graph.node.length,
    opTypes,
    inputs: graph.input.filter((i) => !initializerNames.has(i.name)).map(tensorIo),
    outputs: graph.output.map(tensorIo),
  };
}

/** The token reduction a model was built or patched with, from its metadata_props. */
function builtInReduction(
  model: ModelProto,
): { description: string; settings: Record<string, string> } | undefined {
  const props = Object.fromEntries(
    (model.metadataProps ?? []).map((entry) => [entry.key, entry.value ?? ""]),
  );
  const options = reductionFromMetadata(props);
  if (!options) return undefined;
  const settings = Object.fromEntries(
    Object.entries(props)
      .filter(([key]) => key.startsWith(`${METADATA_PREFIX}.`))
      .map(([key, value]) => [key.slice(METADATA_PREFIX.length + 1), value]),
  );
  return { description: props[METADATA_PREFIX] ?? describeReduction(options), settings };
}

/** A UNet export's findings, and the size it was exported for when its shapes are fixed. */
type OnnxUnet = UnetFindings & { readonly staticSize?: Size };

/** What the patch rules find in a UNet export; undefined when the model is not a UNet. */
function inspectUnet(model: ModelProto, label: string): OnnxUnet | undefined {
  let signature: ReturnType<typeof unetSignature>;
  try {
    signature = unetSignature(model.graph, label);
  } catch {
    return undefined;
  }
  const family = onnxUnetFamily(model.graph.input);
  const { accepted, skipped } = findSelfAttention(
    new GraphIndex(model.graph),
    ATTENTION_RULES,
    signature,
  );

  const perLevel = new Map<number, number>();
  for (const block of accepted) perLevel.set(block.level, (perLevel.get(block.level) ?? 0) + 1);
  // With reduction built in, a reduced self-attention block's keys and values come from the
  // reduced tokens rather than its queries' tokens, so the rules see cross-attention there; true
  // cross-attention takes them from the text conditioning. Those blocks count at their level.
  const builtIn = builtInReduction(model);
  const reducedLevels = new Map<number, number>();
  const isReducedSelf = (block: (typeof skipped)[number]) =>
    block.reason.startsWith("cross-attention") &&
    block.keysFrom === "image" &&
    block.level !== undefined;
  for (const block of skipped) {
    if (!isReducedSelf(block)) continue;
    const level = block.level!;
    perLevel.set(level, (perLevel.get(level) ?? 0) + 1);
    reducedLevels.set(level, (reducedLevels.get(level) ?? 0) + 1);
  }
  const isCross = (reason: string) => reason.startsWith("cross-attention");
  const staticSize = signature.staticSize && {
    width: signature.staticSize.width * 8,
    height: signature.staticSize.height * 8,
  };
  return {
    family,
    staticSize,
    summary: { staticSize: staticSize ?? null },
    attention: (latent, auto) => ({
      from: "graph",
      levels: levelInfos(perLevel, latent, auto),
      crossAttentionBlocks: skipped.filter((s) => isCross(s.reason) && !isReducedSelf(s)).length,
      skipped: skipped
        .filter((s) => !isCross(s.reason))
        .map(({ name, reason }) => ({ name, reason })),
      ...(builtIn
        ? {
            builtIn: {
              description: builtIn.description,
              settings: builtIn.settings,
              reducedBlocksPerLevel: Object.fromEntries(reducedLevels),
            },
          }
        : {}),
    }),
  };
}

/** A diffusers ONNX export folder (model_index.json with unet/model.onnx and friends). */
export function onnxFolderInfo(dir: string, size: Size | undefined): ModelInfo {
  const index = readConfigFile(join(dir, "model_index.json"));
  const entry = (name: string): [string | null, string | null] => {
    const value = index[name];
    return Array.isArray(value) && value.length === 2
      ? [
          typeof value[0] === "string" ? value[0] : null,
          typeof value[1] === "string" ? value[1] : null,
        ]
      : [null, null];
  };
  const components: ComponentInfo[] = [];
  let unet: OnnxUnet | undefined;
  for (const part of FOLDER_PARTS) {
    const path = join(dir, part, "model.onnx");
    if (!existsSync(path)) continue;
    const model = readModel(path, false);
    components.push(onnxComponent(part, path, model, ...entry(part)));
    if (part === "unet") unet = inspectUnet(model, path);
  }
  for (const name of Object.keys(index)) {
    if (name.startsWith("_") || components.some((c) => c.name === name)) continue;
    const [library, className] = entry(name);
    if (className !== null) components.push({ name, library, className });
  }
  const schedulerPath = join(dir, "scheduler", "scheduler_config.json");
  const vPrediction =
    existsSync(schedulerPath) && readConfigFile(schedulerPath).prediction_type === "v_prediction";
  // As the ONNX pipelines choose it: the export's own size, else 768 for SD 2.x v-prediction.
  const defaultSize = unet && (unet.staticSize ?? familySize(unet.family, vPrediction));
  const className = typeof index._class_name === "string" ? index._class_name : null;
  return sizedReport(
    { source: dir, kind: "onnx-folder", pipelineClass: className, components },
    unet,
    defaultSize,
    size,
    8,
  );
}

/** One .onnx file: usually a UNet to be patched. */
export function onnxFileInfo(path: string, size: Size | undefined): ModelInfo {
  const model = readModel(path, false);
  const unet = inspectUnet(model, path);
  const components = [onnxComponent(basename(path), path, model, null, null)];
  return sizedReport(
    { source: path, kind: "onnx-file", pipelineClass: null, components },
    unet,
    unet ? (unet.staticSize ?? familySize(unet.family, true)) : null,
    size,
    8,
  );
}

/** The size the ONNX pipelines generate at for a family (`onnxDefaultSide`). */
function familySize(family: ModelFamily, vPrediction: boolean): Size {
  const side = onnxDefaultSide(family, vPrediction);
  return { width: side, height: side };
}
