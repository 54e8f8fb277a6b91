/**
 * Layers shared by the model builders: linear, conv, group and layer norm, attention, the resnet
 * block and the resampling convolutions of the UNet and the VAE. Each layer declares its weights
 * by their checkpoint keys through a WeightTracker (so a build can prove every weight was used
 * exactly once) and reads them lazily, when the model is written, one tensor at a time.
 *
 * Which ONNX operators implement attention and group norm depends on the backend: a frozen table
 * (`OP_CHOICES`) and one pure function (`chooseOps`) make that choice, in the manner of the
 * device and dtype tables of transformers.js.
 */
import { attr, type Dim, GraphBuilder, MS_DOMAIN, type Value } from "../onnx/builder.js";
import type { Device, ModelDtype } from "../util/vocabulary.js";
import { type WeightSource, WeightTracker } from "../weights/source.js";

// ---- backend -> operator choice ------------------------------------------------------------

/**
 * `MultiHeadAttention`: onnxruntime's fused com.microsoft.MultiHeadAttention (CPU, WebGPU, CUDA).
 * `MatMul`: the plain MatMul / Softmax / MatMul pattern, which any ONNX runtime executes.
 */
export type AttentionOp = "MultiHeadAttention" | "MatMul";

/**
 * `InstanceNormalization`: Reshape to (B, groups, -1), InstanceNormalization, Reshape back, then
 * the per-channel affine; standard ONNX, runs everywhere.
 * `GroupNorm`: onnxruntime's fused com.microsoft.GroupNorm (channels-last; CUDA and WebGPU only,
 * onnxruntime's CPU backend has no kernel for it).
 */
export type GroupNormOp = "InstanceNormalization" | "GroupNorm";

export interface OpChoices {
  readonly attention: AttentionOp;
  readonly groupNorm: GroupNormOp;
}

export const OP_CHOICES: Readonly<Record<Device, OpChoices>> = Object.freeze({
  cpu: Object.freeze({ attention: "MultiHeadAttention", groupNorm: "InstanceNormalization" }),
  wasm: Object.freeze({ attention: "MultiHeadAttention", groupNorm: "InstanceNormalization" }),
  // onnxruntime's WebGPU backend registers no com.microsoft.GroupNorm kernel (it would fall back
  // to the CPU), so group norm goes through InstanceNormalization there.
  webgpu: Object.freeze({ attention: "MultiHeadAttention", groupNorm: "InstanceNormalization" }),
  cuda: Object.freeze({ attention: "MultiHeadAttention", groupNorm: "GroupNorm" }),
});

/** The operators for a backend, with explicit overrides taking precedence. */
export function chooseOps(backend: Device = "cpu", overrides: Partial<OpChoices> = {}): OpChoices {
  const base = OP_CHOICES[backend];
  if (!base)
    throw new Error(
      `unknown backend "${backend}"; expected one of ${Object.keys(OP_CHOICES).join(", ")}`,
    );
  const given = Object.entries(overrides).filter(([, choice]) => choice !== undefined);
  return Object.freeze({ ...base, ...Object.fromEntries(given) });
}

/** Options every model builder takes. */
export interface ModelBuildOptions {
  /** Weights and activations; graph inputs and outputs stay float32 (Casts at the edges). */
  readonly dtype?: ModelDtype;
  /** The device the graph is built for: picks its operators from OP_CHOICES (default cpu). */
  readonly backend?: Device;
  /** Overrides single choices of the backend's table. */
  readonly ops?: Partial<OpChoices>;
  /** Split attention over the queries so its scores fit a device's binding limit. */
  readonly attentionChunking?: AttentionChunking;
}

/**
 * What bounds an attention's score buffer: onnxruntime-web's WebGPU kernel writes all scores of a
 * run, batch x heads x queries x keys, into one buffer, which must fit the device's
 * `maxStorageBufferBindingSize` (onnxruntime-node's WebGPU backend uses flash attention and
 * needs none of this). The graph has dynamic sizes, so chunk counts are set for the largest
 * latent and batch the model is built for.
 */
export interface AttentionChunking {
  /** The largest buffer one kernel may bind, in bytes. */
  readonly maxBindingBytes: number;
  /** The largest latent side (image side / the VAE's scale) the model must run at. */
  readonly maxLatentSide: number;
  /** The largest batch of one call (guidance included). */
  readonly maxBatch: number;
}

/**
 * Query chunks for an attention of `heads` heads whose largest run has `queries` x `keys` scores
 * per head: 1 without chunking or when one run fits.
 */
export function attentionChunks(
  ctx: LayerContext,
  heads: number,
  queries: number,
  keys: number,
  upcast = false,
): number {
  const limit = ctx.chunking;
  if (!limit) return 1;
  // The fused kernel scores in the graph's type; the MatMul form upcasts when asked to.
  const float32Scores = ctx.g.floatType === "float32" || (upcast && ctx.ops.attention === "MatMul");
  const elementBytes = float32Scores ? 4 : 2;
  const bytes = limit.maxBatch * heads * queries * keys * elementBytes;
  return Math.max(1, Math.ceil(bytes / limit.maxBindingBytes));
}

/** A built model: the graph and metadata worth storing in the file (`ModelOptions.metadata`). */
export interface BuiltModel {
  readonly builder: GraphBuilder;
  readonly metadata: Readonly<Record<string, string>>;
}

// ---- build context and weights -------------------------------------------------------------

/** What a layer needs: the top-level graph, the tracked weights and the operator choice. */
export interface LayerContext {
  readonly g: GraphBuilder;
  readonly weights: WeightTracker;
  readonly ops: OpChoices;
  readonly chunking?: AttentionChunking;
}

/** What the layers that only declare weights need (the text encoder has no operator choice). */
export type WeightContext = Pick<LayerContext, "g" | "weights">;

/** The (B, C, H, W) dimensions of a model's image-sized or latent-sized input or output. */
export function featureMapDims(channels: number, grid: "image" | "latent"): Dim[] {
  const [height, width] =
    grid === "image" ? ["height", "width"] : ["latent_height", "latent_width"];
  return ["batch", channels, height, width];
}

/** What every build starts from: a graph in the build's dtype, tracked weights, the operators. */
export function startBuild(
  weights: WeightSource,
  options: ModelBuildOptions,
): { ctx: LayerContext; tracker: WeightTracker; dtype: ModelDtype } {
  const dtype = options.dtype ?? "float32";
  const tracker = new WeightTracker(weights);
  const ctx: LayerContext = {
    g: new GraphBuilder(dtype),
    weights: tracker,
    ops: chooseOps(options.backend, options.ops),
    chunking: options.attentionChunking,
  };
  return { ctx, tracker, dtype };
}

/** The metadata a built model stores: which model, its dtype and the operators chosen. */
export function buildMetadata(
  model: string,
  dtype: string,
  ctx: LayerContext,
): Record<string, string> {
  return {
    "todo_sd.model": model,
    "todo_sd.dtype": dtype,
    "todo_sd.attention_op": ctx.ops.attention,
    "todo_sd.group_norm_op": ctx.ops.groupNorm,
  };
}

/**
 * Declares the weight `key` (checked against `shape` now, read when the model is written) as an
 * initializer named after the key. `transform` rearranges the values inside the lazy read, so
 * no rearranged copy outlives the write of its tensor.
 */
export function weight(
  ctx: WeightContext,
  key: string,
  shape: readonly number[],
  options: {
    readonly dims?: readonly number[];
    readonly transform?: (values: Float32Array) => Float32Array;
    readonly keepFloat32?: boolean;
  } = {},
): Value {
  ctx.weights.take(key, shape);
  const source = ctx.weights.source;
  const transform = options.transform;
  return ctx.g.weight(
    key,
    options.dims ?? shape,
    () => (transform ? transform(source.readFloat32(key)) : source.readFloat32(key)),
    options.keepFloat32 ?? false,
  );
}

/** A row-major [rows, cols] matrix transposed to [cols, rows]. */
export function transposeMatrix(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  }
  return out;
}

// ---- linear --------------------------------------------------------------------------------

export interface LinearWeights {
  /** [in, out]: the PyTorch [out, in] weight transposed, ready for MatMul. */
  readonly weightT: Value;
  readonly bias?: Value;
}

/**
 * Declares the weights of a PyTorch Linear at `key` (`key.weight` [out, in], `key.bias` [out]).
 * A 1x1 convolution ([out, in, 1, 1], `kernel1x1`) is the same map on channel vectors and
 * is declared the same way, so token-wise code can apply it as a MatMul.
 */
export function linearWeights(
  ctx: WeightContext,
  key: string,
  inFeatures: number,
  outFeatures: number,
  options: { readonly bias?: boolean; readonly kernel1x1?: boolean } = {},
): LinearWeights {
  const shape = options.kernel1x1 ? [outFeatures, inFeatures, 1, 1] : [outFeatures, inFeatures];
  const weightT = weight(ctx, `${key}.weight`, shape, {
    dims: [inFeatures, outFeatures],
    transform: (values) => transposeMatrix(values, outFeatures, inFeatures),
  });
  const bias = options.bias === false ? undefined : weight(ctx, `${key}.bias`, [outFeatures]);
  return { weightT, bias };
}

/** x (..., in) -> (..., out). `g` may be a subgraph builder; the weights live at the top level. */
export function applyLinear(g: GraphBuilder, x: Value, weights: LinearWeights): Value {
  return g.linear(x, weights.weightT, weights.bias);
}

/** Declares and applies a Linear: x (..., in) -> (..., out). */
export function linear(
  ctx: WeightContext,
  key: string,
  x: Value,
  inFeatures: number,
  outFeatures: number,
  options: { readonly bias?: boolean; readonly kernel1x1?: boolean } = {},
): Value {
  return applyLinear(ctx.g, x, linearWeights(ctx, key, inFeatures, outFeatures, options));
}

// ---- convolution ---------------------------------------------------------------------------

export interface Conv2dSpec {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernel: number;
  readonly stride?: number;
  /** Symmetric padding (default kernel / 2, "same" for odd kernels). */
  readonly padding?: number;
  /** Explicit ONNX pads [top, left, bottom, right]; overrides `padding`. */
  readonly pads?: readonly [number, number, number, number];
}

/** A PyTorch Conv2d at `key` (weight [out, in, k, k] and bias): x (B, in, H, W) -> (B, out, H', W'). */
export function conv2d(ctx: LayerContext, key: string, x: Value, spec: Conv2dSpec): Value {
  const w = weight(ctx, `${key}.weight`, [
    spec.outChannels,
    spec.inChannels,
    spec.kernel,
    spec.kernel,
  ]);
  const b = weight(ctx, `${key}.bias`, [spec.outChannels]);
  const p = spec.padding ?? Math.floor(spec.kernel / 2);
  const stride = spec.stride ?? 1;
  return ctx.g.op("Conv", [x, w, b], {
    kernel_shape: attr.ints([spec.kernel, spec.kernel]),
    strides: attr.ints([stride, stride]),
    pads: attr.ints(spec.pads ?? [p, p, p, p]),
  });
}

// ---- normalisation -------------------------------------------------------------------------

export interface GroupNormSpec {
  readonly channels: number;
  readonly groups: number;
  readonly eps: number;
  /** Follow with SiLU (fused into com.microsoft.GroupNorm when that op is used). */
  readonly silu?: boolean;
}

/**
 * GroupNorm (Wu & He, 2018) at `key` (`weight`, `bias` [C]): x (B, C, H, W) -> same shape.
 * In a float16 graph the statistics and the affine run in float32: a group spans C/G * H * W
 * values, and float16 sums over that many lose the precision the result needs.
 */
export function groupNorm(ctx: LayerContext, key: string, x: Value, spec: GroupNormSpec): Value {
  const { g } = ctx;
  const { channels, groups, eps } = spec;
  if (channels % groups !== 0) {
    throw new Error(`${key}: ${channels} channels are not divisible into ${groups} groups`);
  }
  if (ctx.ops.groupNorm === "GroupNorm") {
    // Both onnxruntime kernels (CUDA, WebGPU) take channels-last input only, and the CUDA one
    // takes float32 gamma and beta only.
    const gamma = weight(ctx, `${key}.weight`, [channels], { keepFloat32: true });
    const beta = weight(ctx, `${key}.bias`, [channels], { keepFloat32: true });
    const nhwc = g.transpose(x, [0, 2, 3, 1]); // (B, H, W, C)
    const y = g.op(
      "GroupNorm",
      [nhwc, gamma, beta],
      {
        epsilon: attr.float(eps),
        groups: attr.int(groups),
        activation: attr.int(spec.silu ? 1 : 0),
        channels_last: attr.int(1),
      },
      { domain: MS_DOMAIN },
    );
    return g.transpose(y, [0, 3, 1, 2]); // (B, C, H, W)
  }
  const gamma = weight(ctx, `${key}.weight`, [channels], { dims: [channels, 1, 1] });
  const beta = weight(ctx, `${key}.bias`, [channels], { dims: [channels, 1, 1] });
  // Only the statistics need float32; the affine and SiLU run in the graph's float type, which
  // halves their memory traffic in float16 graphs.
  const upcast = g.floatType !== "float32";
  const x32 = upcast ? g.cast(x, "float32") : x;
  const grouped = g.reshape(x32, [0, groups, -1]); // (B, G, C/G * H * W)
  const normed = g.op(
    "InstanceNormalization",
    [
      grouped,
      g.float(new Array<number>(groups).fill(1), [groups], "float32"),
      g.float(new Array<number>(groups).fill(0), [groups], "float32"),
    ],
    { epsilon: attr.float(eps) },
  );
  const restored = g.reshape(normed, g.shape(x)); // (B, C, H, W)
  let y = g.add(g.mul(upcast ? g.castToFloat(restored) : restored, gamma), beta);
  if (spec.silu) y = g.silu(y);
  return y;
}

/** LayerNorm over the last axis at `key` (`weight`, `bias` [dim]). */
export function layerNorm(
  ctx: WeightContext,
  key: string,
  x: Value,
  dim: number,
  eps: number,
): Value {
  const scale = weight(ctx, `${key}.weight`, [dim]);
  const bias = weight(ctx, `${key}.bias`, [dim]);
  return ctx.g.layerNorm(x, scale, bias, eps);
}

// ---- attention -----------------------------------------------------------------------------

export interface AttentionSpec {
  readonly heads: number;
  readonly headDim: number;
  /**
   * Added to the attention scores before the softmax, broadcastable to (B, heads, Nq, Nk)
   * (a causal mask, for instance: 0 where allowed, a large negative number elsewhere).
   */
  readonly bias?: Value;
  /** Compute scores and softmax in float32 in a float16 graph (diffusers' `upcast_attention`). */
  readonly upcast?: boolean;
  /**
   * Attend in this many runs over equal slices of the queries (default 1). Each run's scores
   * are 1/n of the whole, so no single buffer grows past a device's binding limit on backends
   * whose attention kernel materialises the scores (onnxruntime-web's WebGPU backend).
   */
  readonly queryChunks?: number;
}

/**
 * Scaled dot-product attention (Vaswani et al., 2017) with `heads` heads over already projected
 * q (B, Nq, heads * headDim), k and v (B, Nk, heads * headDim); returns (B, Nq, heads * headDim).
 * Builds only with `g`, so it can be used inside If branches.
 */
export function attention(
  g: GraphBuilder,
  op: AttentionOp,
  q: Value,
  k: Value,
  v: Value,
  spec: AttentionSpec,
): Value {
  const chunks = spec.queryChunks ?? 1;
  if (chunks > 1) return chunkedAttention(g, op, q, k, v, { ...spec, queryChunks: 1 }, chunks);
  const scale = 1 / Math.sqrt(spec.headDim);
  if (op === "MultiHeadAttention") {
    // Inputs 3 and 4 (packed bias, key padding mask) are unused; 5 is the additive bias.
    const inputs: Array<Value | ""> = [q, k, v];
    if (spec.bias) inputs.push("", "", spec.bias);
    return g.op(
      "MultiHeadAttention",
      inputs,
      { num_heads: attr.int(spec.heads), scale: attr.float(scale) },
      { domain: MS_DOMAIN },
    );
  }
  const split = (x: Value) => g.reshape(x, [0, 0, spec.heads, spec.headDim]); // (B, N, h, d)
  let qh = g.transpose(split(q), [0, 2, 1, 3]); // (B, h, Nq, d)
  let kh = g.transpose(split(k), [0, 2, 3, 1]); // (B, h, d, Nk)
  const vh = g.transpose(split(v), [0, 2, 1, 3]); // (B, h, Nk, d)
  const upcast = spec.upcast === true && g.floatType !== "float32";
  if (upcast) {
    qh = g.cast(qh, "float32");
    kh = g.cast(kh, "float32");
  }
  const scaleValue = g.float(scale, undefined, upcast ? "float32" : g.floatType);
  let scores = g.matMul(g.mul(qh, scaleValue), kh); // (B, h, Nq, Nk)
  if (spec.bias) scores = g.add(scores, upcast ? g.cast(spec.bias, "float32") : spec.bias);
  let probs = g.softmax(scores, -1);
  if (upcast) probs = g.castToFloat(probs);
  const out = g.transpose(g.matMul(probs, vh), [0, 2, 1, 3]); // (B, Nq, h, d)
  return g.reshape(out, [0, 0, spec.heads * spec.headDim]); // (B, Nq, C)
}

/**
 * Attention over `n` equal slices of the queries, each against all keys: the queries are padded
 * to n * ceil(Nq / n) (the length is only known at run time), cut into n static slices, attended
 * and put back together without the padding. Every query still sees every key, so the result is
 * the same as one run's. Slices are taken one Gather each and joined in small Concats: a WebGPU
 * kernel binds every input and output, and a stage may bind only 8 storage buffers by default
 * (16 on the H100/H200 through Dawn), so an n-way Split or Concat would not compile.
 */
function chunkedAttention(
  g: GraphBuilder,
  op: AttentionOp,
  q: Value,
  k: Value,
  v: Value,
  spec: AttentionSpec,
  n: number,
): Value {
  const length = g.shape(q, 1, 2); // [Nq]
  const per = g.div(g.add(length, g.int64([n - 1])), g.int64([n])); // [ceil(Nq / n)]
  const padding = g.sub(g.mul(per, g.int64([n])), length); // [n * per - Nq]
  // [begin B, Nq, C, end B, Nq, C]: only the end of the query axis is padded.
  const pads = g.concat([g.int64([0, 0, 0, 0]), padding, g.int64([0])], 0);
  const padded = g.op("Pad", [q, pads], { mode: attr.string("constant") }); // (B, n * per, C)
  const sliced = g.reshape(padded, g.concat([g.int64([0, n]), per, g.int64([-1])], 0)); // (B, n, per, C)
  const outputs: Value[] = [];
  for (let i = 0; i < n; i++) {
    const queries = g.gather(sliced, g.int64([i], []), 1); // (B, per, C)
    outputs.push(attention(g, op, queries, k, v, spec));
  }
  const joined = concatInGroups(g, outputs, 1); // (B, n * per, C)
  return g.op("Slice", [joined, g.int64([0]), length, g.int64([1])]); // (B, Nq, C)
}

/** Inputs per Concat: with its output, 8 storage buffers, WebGPU's default per-stage limit. */
const MAX_CONCAT_INPUTS = 7;

/** Concat of many values as a tree of Concats of at most MAX_CONCAT_INPUTS inputs each. */
export function concatInGroups(g: GraphBuilder, values: readonly Value[], axis: number): Value {
  let level = [...values];
  while (level.length > 1) {
    const next: Value[] = [];
    for (let i = 0; i < level.length; i += MAX_CONCAT_INPUTS) {
      const group = level.slice(i, i + MAX_CONCAT_INPUTS);
      next.push(group.length === 1 ? group[0] : g.concat(group, axis));
    }
    level = next;
  }
  return level[0];
}

// ---- resnet and resampling -----------------------------------------------------------------

export interface ResnetSpec {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly groups: number;
  readonly eps: number;
  /** Width of the time embedding given to `resnetBlock` (UNet); absent in the VAE. */
  readonly timeEmbeddingChannels?: number;
  /** The output is (shortcut + residual) / outputScaleFactor. */
  readonly outputScaleFactor?: number;
}

/**
 * diffusers' ResnetBlock2D (He et al., 2016, in the pre-activation form of the DDPM UNet) at `key`:
 * x (B, in, H, W) -> (B, out, H, W). `timeEmbedding` (B, T) must already have gone through the
 * block's nonlinearity: every resnet of a UNet applies the same SiLU to the same embedding, so
 * the caller computes it once.
 */
export function resnetBlock(
  ctx: LayerContext,
  key: string,
  x: Value,
  timeEmbedding: Value | undefined,
  spec: ResnetSpec,
): Value {
  const { g } = ctx;
  const { inChannels, outChannels, groups, eps } = spec;
  // The shortcut comes first in the graph, so that conv2's residual Add reads a value computed
  // before conv2 (an engine may then add it in the convolution's epilogue).
  const shortcut =
    inChannels === outChannels
      ? x
      : conv2d(ctx, `${key}.conv_shortcut`, x, { inChannels, outChannels, kernel: 1 });
  let h = groupNorm(ctx, `${key}.norm1`, x, { channels: inChannels, groups, eps, silu: true });
  h = conv2d(ctx, `${key}.conv1`, h, { inChannels, outChannels, kernel: 3 });
  if (timeEmbedding) {
    if (spec.timeEmbeddingChannels === undefined) {
      throw new Error(`${key}: a time embedding needs timeEmbeddingChannels`);
    }
    const t = linear(
      ctx,
      `${key}.time_emb_proj`,
      timeEmbedding,
      spec.timeEmbeddingChannels,
      outChannels,
    ); // (B, out)
    h = g.add(h, g.unsqueeze(t, [2, 3])); // (B, out, H, W)
  }
  h = groupNorm(ctx, `${key}.norm2`, h, { channels: outChannels, groups, eps, silu: true });
  h = conv2d(ctx, `${key}.conv2`, h, { inChannels: outChannels, outChannels, kernel: 3 });
  const out = g.add(shortcut, h);
  const scale = spec.outputScaleFactor ?? 1;
  return scale === 1 ? out : g.div(out, g.float(scale));
}

/**
 * diffusers' Downsample2D with a convolution at `key` (`key.conv`): a 3x3 stride-2 convolution.
 * `padding` 0 means the VAE's asymmetric form: one extra row and column at the bottom right.
 */
export function downsample(
  ctx: LayerContext,
  key: string,
  x: Value,
  channels: number,
  padding: number,
): Value {
  return conv2d(ctx, `${key}.conv`, x, {
    inChannels: channels,
    outChannels: channels,
    kernel: 3,
    stride: 2,
    ...(padding === 0 ? { pads: [0, 0, 1, 1] as const } : { padding }),
  });
}

/**
 * diffusers' Upsample2D with a convolution at `key` (`key.conv`): nearest-neighbour upsampling,
 * then a 3x3 convolution. Without `like`, the size doubles; with it, the output takes the height
 * and width of `like` (B, *, H, W), as diffusers' UNet does when the latent size is not a
 * multiple of its total stride (`upsample_size`: the skip connection's size).
 */
export function upsample(
  ctx: LayerContext,
  key: string,
  x: Value,
  channels: number,
  like?: Value,
): Value {
  const up = nearestResize(ctx.g, x, like);
  return conv2d(ctx, `${key}.conv`, up, { inChannels: channels, outChannels: channels, kernel: 3 });
}

/** Nearest resize with PyTorch's rule (source index = floor(dst * in / out)). */
export function nearestResize(g: GraphBuilder, x: Value, like?: Value): Value {
  const attributes = {
    mode: attr.string("nearest"),
    coordinate_transformation_mode: attr.string("asymmetric"),
    nearest_mode: attr.string("floor"),
  };
  if (!like) return g.op("Resize", [x, "", g.float([1, 1, 2, 2], [4], "float32")], attributes);
  const sizes = g.concat([g.shape(x, 0, 2), g.shape(like, 2, 4)], 0); // [B, C, H', W']
  return g.op("Resize", [x, "", "", sizes], attributes);
}
