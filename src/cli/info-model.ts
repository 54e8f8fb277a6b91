/**
 * What `todo-sd info` reports, as data: the parts of a model, its weights, and where its UNet
 * keeps self-attention, with the token counts that ToDo reduces at a given image size.
 */

import { parseUnetConfig, type UnetConfig, unetAttentionSites } from "../configs/unet-config.js";
import { parseVaeConfig } from "../configs/vae-config.js";
import { describeReduction, parseReductionOptions } from "../index.js";
import type { MemoryEstimate } from "../pipelines/memory-estimate.js";
import { familyOf } from "../pipelines/model-plan.js";
import { levelGrid, resolveAutoFactor, resolveReduction } from "../reduce/options.js";
import { elementCount } from "../util/random.js";
import type { ModelFamily } from "../util/vocabulary.js";
import { type ComponentName, componentClassName, type ModelFiles } from "../weights/model-files.js";

export interface TensorIo {
  readonly name: string;
  readonly type: string;
  /** Fixed sizes as numbers, named dimensions as their names, unknown as "?". */
  readonly shape: readonly (number | string)[];
}

export interface ComponentInfo {
  readonly name: string;
  readonly library: string | null;
  readonly className: string | null;
  /** Weights: element count, and element count per dtype (float16, float32, ...). */
  readonly parameters?: number;
  readonly dtypes?: Readonly<Record<string, number>>;
  /** ONNX models only. */
  readonly file?: string;
  readonly opset?: number;
  readonly nodes?: number;
  readonly opTypes?: Readonly<Record<string, number>>;
  readonly inputs?: readonly TensorIo[];
  readonly outputs?: readonly TensorIo[];
}

export interface LevelInfo {
  readonly level: number;
  /** The token grid of this level at the image size (latent grid halved level - 1 times). */
  readonly grid: { readonly width: number; readonly height: number };
  readonly tokens: number;
  readonly selfAttentionBlocks: number;
  /** What `--todo auto` does here: its factor and the keys/values left, or null (untouched). */
  readonly auto: { readonly factor: number; readonly keyValueTokens: number } | null;
}

export interface AttentionInfo {
  /** `config`: counted from unet/config.json; `graph`: found by the patch rules in the export. */
  readonly from: "config" | "graph";
  readonly levels: readonly LevelInfo[];
  readonly crossAttentionBlocks: number;
  /** Graph blocks the rules could not place or accept, and why. */
  readonly skipped?: readonly { readonly name: string; readonly reason: string }[];
  /** The reduction built into an exported UNet (its metadata_props), and the blocks it reduces. */
  readonly builtIn?: {
    readonly description: string;
    readonly settings: Readonly<Record<string, string>>;
    readonly reducedBlocksPerLevel: Readonly<Record<number, number>>;
  };
}

export interface ModelInfo {
  readonly source: string;
  readonly kind: string;
  readonly family: ModelFamily | null;
  readonly pipelineClass: string | null;
  readonly components: readonly ComponentInfo[];
  readonly unet: Readonly<Record<string, unknown>> | null;
  /** The size the model generates when none is asked (a static export's own size). */
  readonly defaultSize: { readonly width: number; readonly height: number } | null;
  readonly size: { readonly width: number; readonly height: number } | null;
  readonly latent: { readonly width: number; readonly height: number } | null;
  readonly attention: AttentionInfo | null;
  readonly auto: {
    readonly factor: number;
    readonly factorLevel2: number;
    readonly description: string;
  } | null;
  /** The memory a generation at `size` needs, per device kind (see cli/memory-check.ts). */
  readonly memory?: Readonly<Record<string, MemoryEstimate>>;
}

/** safetensors dtype names as ONNX spells element types, so both kinds of model read alike. */
const DTYPE_NAMES: Readonly<Record<string, string>> = Object.freeze({
  F64: "float64",
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U64: "uint64",
  U32: "uint32",
  U16: "uint16",
  U8: "uint8",
  BOOL: "bool",
});

const WEIGHT_COMPONENTS: readonly ComponentName[] = [
  "unet",
  "vae",
  "text_encoder",
  "text_encoder_2",
];

/** Self-attention blocks per spatial level, from the UNet config's attention sites. */
export function attentionLevelsFromConfig(config: UnetConfig): {
  perLevel: Map<number, number>;
  cross: number;
} {
  const perLevel = new Map<number, number>();
  let cross = 0;
  // Each transformer block holds one self-attention and one cross-attention.
  for (const site of unetAttentionSites(config)) {
    perLevel.set(site.level, (perLevel.get(site.level) ?? 0) + site.depth);
    cross += site.depth;
  }
  return { perLevel, cross };
}

/** Token counts and what `--todo auto` reduces at each level that has self-attention. */
export function levelInfos(
  perLevel: ReadonlyMap<number, number>,
  latent: { width: number; height: number },
  auto: { factor: number; factorLevel2: number },
): LevelInfo[] {
  return [...perLevel.entries()]
    .filter(([, blocks]) => blocks > 0)
    .sort((a, b) => a[0] - b[0])
    .map(([level, blocks]) => {
      const grid = levelGrid(latent.height, latent.width, level);
      const factor = level === 1 ? auto.factor : level === 2 ? auto.factorLevel2 : 1;
      return {
        level,
        grid,
        tokens: grid.width * grid.height,
        selfAttentionBlocks: blocks,
        auto:
          factor > 1
            ? {
                factor,
                keyValueTokens: Math.floor(grid.width / factor) * Math.floor(grid.height / factor),
              }
            : null,
      };
    });
}

export function autoInfo(
  architecture: ModelFamily,
  width: number,
  height: number,
): NonNullable<ModelInfo["auto"]> {
  const factors = resolveAutoFactor(width, height, architecture);
  const settings = resolveReduction(parseReductionOptions({ factor: "auto" }), {
    architecture,
    width,
    height,
  });
  return { ...factors, description: describeReduction(settings) };
}

/** Element counts of tensors, in all and per element type. */
export function countParameters(
  tensors: Iterable<{ readonly type: string; readonly count: number }>,
) {
  const dtypes: Record<string, number> = {};
  let parameters = 0;
  for (const { type, count } of tensors) {
    dtypes[type] = (dtypes[type] ?? 0) + count;
    parameters += count;
  }
  return { parameters, dtypes };
}

function weightComponent(files: ModelFiles, name: ComponentName): ComponentInfo {
  const entry = files.modelIndex?.components[name];
  const weights = files.weights[name];
  const tensors = (weights?.keys() ?? []).map((key) => {
    const { dtype, shape } = weights!.info(key);
    return { type: DTYPE_NAMES[dtype] ?? dtype, count: elementCount(shape) };
  });
  return {
    name,
    library: entry?.[0] ?? null,
    className: componentClassName(files, name) ?? null,
    ...(weights ? countParameters(tensors) : {}),
  };
}

/** The report for a source built from weights (diffusers folder, single file, builtin, Hub). */
export function weightsInfo(
  source: string,
  kind: string,
  files: ModelFiles,
  size: { width: number; height: number } | undefined,
): ModelInfo {
  const family = familyOf(files);
  const components: ComponentInfo[] = WEIGHT_COMPONENTS.filter((c) => files.weights[c]).map((c) =>
    weightComponent(files, c),
  );
  for (const [name, [library, className]] of Object.entries(files.modelIndex?.components ?? {})) {
    if (className === null || components.some((c) => c.name === name)) continue;
    components.push({ name, library, className });
  }
  const unetJson = files.configs.unet;
  const unetConfig = unetJson ? parseUnetConfig(unetJson, `${files.label} unet/config.json`) : null;
  const vaeJson = files.configs.vae;
  const vaeScale = vaeJson
    ? 2 ** (parseVaeConfig(vaeJson, `${files.label} vae/config.json`).blockOutChannels.length - 1)
    : 8;
  const side = unetConfig ? (unetConfig.sampleSize ?? 64) * vaeScale : null;
  const unet: UnetFindings | undefined = unetConfig
    ? {
        family,
        summary: unetSummary(unetConfig),
        attention: (latent, auto) => {
          const { perLevel, cross } = attentionLevelsFromConfig(unetConfig);
          return {
            from: "config",
            levels: levelInfos(perLevel, latent, auto),
            crossAttentionBlocks: cross,
          };
        },
      }
    : undefined;
  return sizedReport(
    { source, kind, family, pipelineClass: files.modelIndex?.className ?? null, components },
    unet,
    side === null ? null : { width: side, height: side },
    size,
    vaeScale,
  );
}

type Size = { readonly width: number; readonly height: number };

/** What a model's UNet tells the report: its family, its summary and its attention levels. */
export interface UnetFindings {
  readonly family: ModelFamily;
  readonly summary: Readonly<Record<string, unknown>>;
  /** The levels at a latent size, with what `--todo auto` does at its image size. */
  readonly attention: (latent: Size, auto: NonNullable<ModelInfo["auto"]>) => AttentionInfo;
}

/**
 * The report at the asked image size, else the model's own: the latent grid, and with a UNet the
 * attention levels and what `--todo auto` does there.
 */
export function sizedReport(
  base: Pick<ModelInfo, "source" | "kind" | "pipelineClass" | "components"> & {
    readonly family?: ModelFamily;
  },
  unet: UnetFindings | undefined,
  defaultSize: Size | null | undefined,
  size: Size | undefined,
  vaeScale: number,
): ModelInfo {
  const image = size ?? defaultSize ?? undefined;
  const latent = image && {
    width: Math.ceil(image.width / vaeScale),
    height: Math.ceil(image.height / vaeScale),
  };
  const auto = unet && image ? autoInfo(unet.family, image.width, image.height) : null;
  return {
    ...base,
    family: base.family ?? unet?.family ?? null,
    unet: unet?.summary ?? null,
    defaultSize: defaultSize ?? null,
    size: image ?? null,
    latent: latent ?? null,
    attention: unet && latent && auto ? unet.attention(latent, auto) : null,
    auto,
  };
}

function unetSummary(config: UnetConfig): Record<string, unknown> {
  const crossWidths = [
    ...new Set(
      [...config.downBlocks, ...config.upBlocks, config.midBlock]
        .map((b) => b?.attention?.crossAttentionDim)
        .filter((d): d is number => d !== undefined),
    ),
  ];
  return {
    inChannels: config.inChannels,
    blockOutChannels: config.blockOutChannels,
    downBlocks: config.downBlocks.map((b) => b.type),
    upBlocks: config.upBlocks.map((b) => b.type),
    midBlock: config.midBlock?.type ?? null,
    crossAttentionDim: crossWidths.length === 1 ? crossWidths[0] : crossWidths,
    sampleSize: config.sampleSize,
    textTimeConditioning: config.addition !== null,
  };
}
