/**
 * Executes an ONNX model as the graph builders emit it (the same ModelProto onnxruntime runs) on
 * our WebGPU layer. Why the graph and not a model written again for this engine: the builders
 * (models/, reduce/) stay the one description of each model, ToDo and ToMe included, so the two
 * engines cannot drift apart, and ONNX files patched elsewhere run here too. The heavy operators
 * run on src/gpu's tuned kernels where their shapes fit (tuned-plans.ts decides): MatMul on the
 * batched GEMM (with a Linear's bias Add, and a GELU or GEGLU after it, fused), Conv on the NHWC
 * implicit-GEMM convolution, MultiHeadAttention on the flash attention, LayerNormalization on the
 * layer norm; the rest, and the shapes those kernels refuse, run on the engine's own portable
 * kernels (portable-kernels.ts). Planning happens once per model: topological order, each value's
 * last use, which MatMuls take their bias Add (and a GELU or GEGLU, fusions.ts) along,
 * initializers decoded (weights are uploaded to the GPU the first time a kernel needs them and
 * kept; Conv weights in the tuned kernel's layout); tuned kernels are compiled once per shape and
 * kept. A call then walks the plan: shape arithmetic, flags and the timestep's small tensors are
 * evaluated on the host (host-ops.ts); float activations stay in pooled GPU buffers, released
 * after their last use; kernel launches accumulate and go to the GPU in one compute pass, which is
 * submitted where the host must read a value (an `If` condition that depends on GPU data, ToMe's
 * selection steps), every `submitEvery` launches on a hardware adapter (so the GPU runs the
 * call's start while the host records the rest) and at the end. The host never waits on the GPU
 * except for such a read.
 */

import { BUFFER_USAGE } from "../gpu/buffer-pool.js";
import { bytesPerElement, type GpuContext, type KernelLaunch } from "../gpu/context.js";
import {
  type AttentionKernel,
  type AttentionShape,
  prepareAttention,
} from "../gpu/kernels/attention.js";
import { convOutputSize, prepareConv } from "../gpu/kernels/conv2d.js";
import { type GemmShape, prepareGemm } from "../gpu/kernels/gemm.js";
import { type MatmulKernel, SMALL_PORTABLE_TILING } from "../gpu/kernels/matmul-kernel.js";
import type { Epilogue, PortableTiling, Tiling } from "../gpu/kernels/matmul-wgsl.js";
import { type LayerNormKernel, prepareLayerNorm } from "../gpu/kernels/norm.js";
import type { GpuTimer } from "../gpu/timer.js";
import type { GpuCapabilities, PathRequest } from "../gpu/types.js";
import { chooseKernelVariant, type KernelVariant, kernelPathLabel } from "../gpu/variants.js";
import type { GraphProto, ModelProto, NodeProto } from "../onnx/proto.js";
import { PromiseMemo } from "../util/promise-memo.js";
import { sameShape } from "../weights/source.js";
import { type Attributes, attributesOf, normalizeAxis } from "./attributes.js";
import {
  convResidualFusions,
  type GroupNormFusion,
  groupNormFusions,
  type LinearFusion,
  linearFusions,
  type ResidualFusion,
} from "./fusions.js";
import {
  ints,
  reshapeDims,
  resolveSlice,
  runHostOp,
  squeezeDims,
  unsqueezeDims,
} from "./host-ops.js";
import {
  broadcastShapes,
  broadcastStrides,
  decodeTensorProto,
  type HostTensor,
  sizeOf,
  stridesOf,
  uploadElements,
} from "./host-tensor.js";
import {
  attentionKernel,
  BINARY_EXPRESSIONS,
  binaryKernel,
  concatPairKernel,
  convertStorageKernel,
  convKernel,
  copyKernel,
  fillKernel,
  GROUP_NORM_TILE,
  gatherKernel,
  grid,
  groupNormApplyKernel,
  groupNormChunks,
  groupNormKernel,
  groupNormPartialsKernel,
  MAX_HEAD,
  MAX_RANK,
  matmulKernel,
  normKernel,
  type ReduceKind,
  reduceKernel,
  resizeNearestKernel,
  rowGrid,
  type Storage,
  softmaxKernel,
  UNARY_EXPRESSIONS,
  unaryKernel,
} from "./portable-kernels.js";
import {
  Capture,
  MAX_PLANS,
  type PlannedOutput,
  planKey,
  type ReplayPlan,
  replayHostValues,
} from "./replay.js";
import {
  attentionPlan,
  convPlan,
  convWeightSourceStrides,
  gemmPlan,
  layerNormPlan,
  type TunedConv,
} from "./tuned-plans.js";
import { unsupported } from "./unsupported.js";

/** A float tensor in a GPU buffer, in the executor's storage type; reshapes share the buffer. */
export interface DeviceTensor {
  readonly kind: "device";
  readonly buffer: GPUBuffer;
  readonly dims: readonly number[];
  /**
   * The (B, C, H, W) tensor's data is stored (B, H, W, C): a group norm writes it so for the one
   * Conv that reads it (fusions.ts), which takes it as its NHWC input. Nothing else sees one.
   */
  readonly channelsLast?: boolean;
}

export type Value = HostTensor | DeviceTensor;

/**
 * A float tensor left on the device between calls: an output a call kept (`runKeeping`), or a
 * feed. Executors on one GpuContext hand these to each other; one in the other storage type is
 * converted on the way in. Whoever holds one returns its buffer to the context's pool when done.
 */
export interface ResidentBuffer {
  readonly buffer: GPUBuffer;
  readonly dims: readonly number[];
  readonly storage: Storage;
}

/** What one call did, for reports and tests. */
export interface ExecutionStats {
  /**
   * Compute passes submitted: one per `submitEvery` launches and one at the call's end, plus one
   * before each GPU value the host had to read mid-call (`readbacks`).
   */
  submits: number;
  /** Kernel launches recorded. */
  launches: number;
  /** GPU values read back to the host inside the call (outputs excluded). */
  readbacks: number;
  /** Operators that ran on the host with GPU inputs read back, by type. */
  hostFallbacks: Record<string, number>;
  /**
   * Launches by kernel: src/gpu's tuned kernels as `tuned gemm`, `tuned conv`, `tuned
   * attention` and `tuned layernorm`, the engine's portable ones by their own names (`matmul`,
   * `conv`, `attention`, `LayerNormalization`, `copy`, `Add`, ...).
   */
  kernels: Record<string, number>;
  /**
   * Bind groups made for this call. A warm call at the size of the last one makes them only for
   * launches that read a buffer of its own (its inputs, index lists); the rest are reused.
   */
  bindGroups: number;
  /**
   * With ExecutorOptions.timeSubmits: the GPU's time on the call's submitted passes. `busyMs` is
   * the passes' own time, `spanMs` from the first pass's start to the last one's end; what lies
   * between (spanMs - busyMs) the GPU spent waiting for the host's next submit. `untimed`
   * counts passes past the timer's capacity (TIMED_SUBMITS), left out of both.
   */
  gpu?: { passes: number; busyMs: number; spanMs: number; untimed?: number };
  /**
   * The call replayed the launches an earlier call of the same signature recorded (replay.ts)
   * instead of walking the graph.
   */
  replayed: boolean;
}

export interface ExecutorOptions {
  /**
   * The tile of the tuned GEMM and convolution on their portable path (default: src/gpu's
   * default, or SMALL_PORTABLE_TILING on a fallback adapter: a CPU driver compiles and runs it
   * several times faster).
   */
  readonly portableTiling?: PortableTiling;
  /**
   * Element type of every float tensor on the GPU (default f32): weights are uploaded and
   * activations kept in it, and every kernel reads and writes it, computing in f32 inside. f16
   * needs the adapter's `shader-f16` and gives src/gpu's tuned kernels their tensor-core path
   * where the adapter has subgroup matrices.
   */
  readonly storage?: Storage;
  /**
   * Time every launch on the GPU (the `timestamp-query` feature): each launch then gets a
   * compute pass of its own, which costs a little, so profile and timed runs are separate runs.
   */
  readonly profile?: boolean;
  /**
   * The most bytes of attention scores written at once where heads are too wide for the flash
   * kernels (default 256 MiB, or the adapter's binding limit if lower): the queries go in
   * blocks of this many scores. Tests set it small to run several blocks.
   */
  readonly attentionScoreBytes?: number;
  /**
   * Convolutions read their NCHW input directly rather than an NHWC copy of it (default false).
   * The direct read gathers a pixel's channels from four planes, which made the convolutions
   * 20-37% slower on an H100; the transposing copy it saves costs more than that where maps are
   * large. Measured both ways in one run (BENCHMARKS.md): the SD 1.5 VAE decode at 1024 px (maps
   * up to 1024 x 1024) took 131 ms reading directly against 162 with copies, the UNet at 1024 px
   * (maps up to 128 x 128, batch 2) 197 ms against 181. The pipelines set it for the VAE.
   */
  readonly channelsFirstConv?: boolean;
  /**
   * Launches recorded per submit (default engineSubmitEvery's: SUBMIT_EVERY on a hardware adapter,
   * one submit at the call's end on a fallback one). Submitting as the call is recorded lets the
   * GPU work while the host records the rest, rather than idle until the whole call is recorded;
   * scripts/submit-sweep.mjs times a UNet call at several intervals.
   */
  readonly submitEvery?: number;
  /**
   * Lets the tuned GEMM and convolution split K over several workgroups where their output tiles
   * alone leave the GPU idle (default true: src/gpu's defaultSplitK decides); false runs every
   * one unsplit, for benchmarks that time a call both ways (scripts/submit-sweep.mjs).
   */
  readonly splitK?: boolean;
  /**
   * Time every submitted pass on the GPU (the `timestamp-query` feature) and report the GPU's
   * busy and idle time per call in ExecutionStats.gpu: whether a call waits on the host's
   * recording or on the GPU (scripts/submit-sweep.mjs). A call then waits for its GPU work to
   * finish before it returns.
   */
  readonly timeSubmits?: boolean;
  /**
   * Replay a warm call's launches instead of walking the graph again where an earlier call had
   * the same signature (replay.ts; default true). false walks the graph on every call.
   */
  readonly replay?: boolean;
  /**
   * Before the first walk of a call signature, walk the graph once without recording anything
   * only to start every kernel's compile, so that the driver compiles them side by side rather
   * than one at a time as the real walk reaches each (default true; it applies where replay
   * does). On an H100, 16 attention pipelines compiled in 6.67 s asked for at once against
   * 12.21 s one after another; a cold 2048 px first call spent 59 of its 73 s compiling 94 of
   * them one after another (BENCHMARKS.md). Values the compile-ahead walk reads back from the
   * GPU are not computed (nothing runs), so a branch it takes on them may compile kernels the
   * real walk does not need; a compile-ahead walk that fails leaves everything to the real one.
   */
  readonly compileAhead?: boolean;
  /** Told why a compile-ahead walk stopped early, where it did (tests and diagnostics). */
  readonly onCompileAheadError?: (error: Error) => void;
  /**
   * The K/V token count from which the tuned attention reads K and V stored by head, (B, H, N,
   * d), each copied into that layout first (AttentionShape.kvByHead); left out: never. In the
   * projections' layout one head's K/V spans every cache line of the tensors (about 25 MB per
   * head at 2048 px, heads of 40), more than an L2 cache holds while every resident workgroup
   * streams it; by head, 10.5 MB. A candidate until a GPU run times a whole call both ways
   * (`bench-kernels` times the attention alone in both layouts).
   */
  readonly kvByHeadFrom?: number;
  /**
   * Which of src/gpu's paths the tuned kernels take (default auto: the tensor cores where the
   * adapter has subgroup matrices, else the portable kernels); see engine/select.ts.
   */
  readonly kernelPath?: PathRequest;
}

/** The most passes of one call ExecutorOptions.timeSubmits times (2 timestamps each). */
const TIMED_SUBMITS = 1024;

/**
 * The tile of the tuned GEMM and convolution on their portable path: the one asked for, else on a
 * fallback (CPU) adapter the small tile, else undefined (src/gpu's default tile).
 */
export function enginePortableTiling(
  variant: KernelVariant,
  capabilities: Pick<GpuCapabilities, "fallbackAdapter">,
  requested: PortableTiling | undefined,
): PortableTiling | undefined {
  if (variant.path !== "portable") return undefined;
  return requested ?? (capabilities.fallbackAdapter ? SMALL_PORTABLE_TILING : undefined);
}

/**
 * Launches per submit on a hardware adapter unless ExecutorOptions.submitEvery says otherwise.
 * The GPU then runs the call's first kernels while the host records the rest: on an H100
 * (BENCHMARKS.md, scripts/submit-sweep.mjs) an SD 1.5 UNet call took 173 ms at 1024 px and 48 ms
 * at 512 px submitted every 32 launches, against 196-203 and 65-72 ms submitted once at its end.
 */
export const SUBMIT_EVERY = 32;

/**
 * Launches per submit: the one asked for, else one submit per call on a fallback adapter (a CPU
 * driver such as SwiftShader, where each submit starts the driver's work on the cores the host
 * records with: a call's recording took 1.5-2x longer with a submit every 16 launches), else
 * SUBMIT_EVERY.
 */
export function engineSubmitEvery(
  capabilities: Pick<GpuCapabilities, "fallbackAdapter">,
  requested: number | undefined,
): number {
  return requested ?? (capabilities.fallbackAdapter ? Number.POSITIVE_INFINITY : SUBMIT_EVERY);
}

/** A call's timed passes (GpuTimer.readSpans) as ExecutionStats.gpu. */
export function submitSpans(
  spans: readonly { startMs: number; endMs: number }[],
): NonNullable<ExecutionStats["gpu"]> {
  if (spans.length === 0) return { passes: 0, busyMs: 0, spanMs: 0 };
  const busyMs = spans.reduce((sum, s) => sum + (s.endMs - s.startMs), 0);
  const spanMs = Math.max(...spans.map((s) => s.endMs)) - Math.min(...spans.map((s) => s.startMs));
  return { passes: spans.length, busyMs, spanMs };
}

/** GPU time per kernel label, summed over the profiled calls. */
export interface KernelProfile {
  readonly calls: number;
  readonly byKernel: ReadonlyMap<string, { readonly ms: number; readonly launches: number }>;
}

function emptyStats(): ExecutionStats {
  return {
    submits: 0,
    launches: 0,
    readbacks: 0,
    hostFallbacks: {},
    kernels: {},
    bindGroups: 0,
    replayed: false,
  };
}

function f32Bits(value: number): number {
  const view = new DataView(new ArrayBuffer(4));
  view.setFloat32(0, value, true);
  return view.getInt32(0, true);
}

function padded(values: readonly number[], length = MAX_RANK): number[] {
  if (values.length > length)
    throw unsupported(`a tensor of rank ${values.length} (at most ${length})`);
  return [...values, ...new Array<number>(length - values.length).fill(0)];
}

/** copyKernel's parameters: `shape`'s elements from src (offset, strides) into dst. */
function copyParams(
  shape: readonly number[],
  srcOffset: number,
  srcStrides: readonly number[],
  dstOffset: number,
  dstStrides: readonly number[],
): number[] {
  return [
    sizeOf(shape),
    shape.length,
    dstOffset,
    srcOffset,
    ...padded(shape),
    ...padded(srcStrides),
    ...padded(dstStrides),
  ];
}

/** Operators that always run on the GPU, even with host inputs (weights, the time embedding). */
/** Bind groups kept for reuse by one executor, at most (a UNet call makes about 1,100). */
const MAX_BIND_GROUPS = 16384;

/** Thrown at the end of a compile-ahead walk to leave it through the call's clean-up. */
const COMPILED_AHEAD = new Error("compiled ahead");

/** Signatures remembered as not replayable before the list starts over. */
const MAX_UNREPLAYABLE = 64;

/** How a replay makes a graph output the captured call produced from `v` as `out`. */
function plannedOutput(
  capture: Capture,
  v: Value,
  out: HostTensor | ResidentBuffer,
): PlannedOutput {
  if ("buffer" in out)
    return { kind: "keep", buffer: out.buffer, dims: out.dims, bytes: out.buffer.size };
  if (v.kind === "device") return { kind: "read", buffer: v.buffer, dims: v.dims };
  return capture.isVarying(v)
    ? { kind: "varying", name: capture.nameOf(v) }
    : { kind: "constant", value: v };
}
/**
 * The most bytes of scores the wide-head attention writes at once (see scoredAttention): big
 * enough that a 1024 px VAE's attention is two GEMM pairs, small enough for any adapter's
 * binding limit and to leave the activations their room.
 */
const DEFAULT_SCORE_BYTES = 256 * 2 ** 20;

const DEVICE_ONLY = new Set([
  "MatMul",
  "Conv",
  "InstanceNormalization",
  "LayerNormalization",
  "MultiHeadAttention",
  "Softmax",
  "Resize",
]);

/** Operators whose outputs are views of their first input (no copy on the GPU). */
const VIEWS = new Set(["Reshape", "Unsqueeze", "Squeeze", "Identity", "Flatten"]);

class Scope {
  readonly values = new Map<string, Value>();
  constructor(readonly parent?: Scope) {}
  get(name: string): Value | undefined {
    return this.values.get(name) ?? this.parent?.get(name);
  }
}

/** Names a subgraph reads from the scopes around it. */
function outerNames(graph: GraphProto): Set<string> {
  const produced = new Set<string>([
    ...graph.input.map((i) => i.name),
    ...(graph.initializer ?? []).map((t) => t.name ?? ""),
  ]);
  for (const node of graph.node) for (const out of node.output) produced.add(out);
  const used = new Set<string>();
  for (const node of graph.node)
    for (const name of nodeReads(node)) if (!produced.has(name)) used.add(name);
  return used;
}

/** Every name a node reads, including what its subgraphs read from outside. */
function nodeReads(node: NodeProto): string[] {
  const names = node.input.filter((n) => n !== "");
  for (const a of node.attribute ?? []) if (a.g) names.push(...outerNames(a.g));
  return names;
}

/**
 * Nodes in an order where every input is produced first (Kahn's algorithm). A subgraph (an `If`
 * branch) also reads names of the scopes around it: those count as available from the start.
 */
export function topologicalOrder(graph: GraphProto, subgraph = false): NodeProto[] {
  const available = new Set<string>([
    ...graph.input.map((i) => i.name),
    ...(graph.initializer ?? []).map((t) => t.name ?? ""),
  ]);
  if (subgraph) for (const name of outerNames(graph)) available.add(name);
  const remaining = [...graph.node];
  const order: NodeProto[] = [];
  while (remaining.length > 0) {
    const before = remaining.length;
    for (let i = 0; i < remaining.length; ) {
      const node = remaining[i];
      if (nodeReads(node).every((n) => available.has(n))) {
        order.push(node);
        for (const out of node.output) available.add(out);
        remaining.splice(i, 1);
      } else i++;
    }
    if (remaining.length === before) {
      const missing = nodeReads(remaining[0]).filter((n) => !available.has(n));
      throw new Error(
        `the graph is not executable: node "${remaining[0].name ?? remaining[0].opType}" reads ${missing.join(", ")}, which nothing produces (or a cycle)`,
      );
    }
  }
  return order;
}

export class GraphExecutor {
  private readonly initializers = new Map<string, HostTensor>();
  private readonly order: NodeProto[];
  /** Index of the last top-level node that reads each value. */
  private readonly lastUse = new Map<string, number>();
  private readonly attributes = new Map<NodeProto, Attributes>();
  /** Weights on the GPU, uploaded once. */
  private readonly weightsOnDevice = new Map<HostTensor, DeviceTensor>();
  private readonly params = new Map<string, GPUBuffer>();
  private readonly initializerSet = new Set<HostTensor>();
  /** Buffers made for host values (not pooled): destroyed, never handed to the pool. */
  private readonly owned = new Set<GPUBuffer>();
  private readonly refs = new Map<GPUBuffer, number>();
  private pending: KernelLaunch[] = [];
  private pendingLabels: string[] = [];
  /** The timer of ExecutorOptions.timeSubmits, made at the first timed call. */
  private submitTimer: GpuTimer | undefined;
  /** Passes of this call past the timer's capacity, submitted untimed. */
  private untimedSubmits = 0;
  /** GPU times of profiled passes, read after the call that recorded them. */
  private pendingTimes: Promise<{ label: string; ms: number }[]>[] = [];
  private readonly timings = new Map<string, { ms: number; launches: number }>();
  private profiledCalls = 0;
  private runUploads = new Map<HostTensor, DeviceTensor>();
  /** The f32-to-f16 conversion of a call's uploads (uploadInput), made before the first walk. */
  private uploadConvert: GPUComputePipeline | undefined;
  /** The call being captured for replay (replay.ts), while it walks the graph. */
  private capture: Capture | undefined;
  /** Captured calls, newest first. */
  private plans: ReplayPlan[] = [];
  /** Signatures whose calls showed they cannot be replayed: walked without capturing. */
  private readonly unreplayable = new Set<string>();
  private scratch: GPUBuffer[] = [];
  /** Buffers of this call only (its uploads, its index buffers): destroyed when it ends. */
  private readonly transient = new Set<GPUBuffer>();
  /**
   * Bind groups of launches whose buffers outlive the call (weights, parameters, pooled
   * activations), kept for the next call: the pool hands out the same buffers in the same order
   * when the same graph runs at the same size, so a warm call makes almost none.
   */
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 0;
  stats: ExecutionStats = emptyStats();
  /**
   * The variant of src/gpu's tuned kernels this engine runs: in f32 storage their portable path;
   * in f16 their tensor-core path where the adapter has subgroup matrices, else their portable
   * f16 path. Every kernel accumulates in f32, so the f32 islands of a float16 graph (its Casts,
   * the group norm's statistics) need nothing of their own here: a Cast between float types is
   * a view.
   */
  private readonly variant: KernelVariant;
  private readonly storage: Storage;
  /**
   * Tuned kernels prepared (compiled) once per shape and kept with the plan; a preparation that
   * failed is dropped, so the next call tries again.
   */
  private readonly gemms = new PromiseMemo<string, MatmulKernel>();
  private readonly convs = new PromiseMemo<string, MatmulKernel>();
  private readonly attentions = new PromiseMemo<string, AttentionKernel>();
  private readonly layerNorms = new PromiseMemo<string, LayerNormKernel>();
  /** Set while a compile-ahead walk runs: launches start their kernels' compiles, nothing else. */
  private dry = false;
  /** Call signatures walked ahead already (compileAhead): once each. */
  private readonly walkedAhead = new Set<string>();
  /** Top-level MatMuls whose bias Add (and GEGLU) the tuned GEMM applies in its epilogue. */
  private readonly linears: ReadonlyMap<NodeProto, LinearFusion>;
  /** Group norms (InstanceNormalization, affine, SiLU) run as one kernel, by their first node. */
  private readonly groupNorms: ReadonlyMap<NodeProto, GroupNormFusion>;
  /** Top-level Convs whose residual Add the tuned convolution applies in its epilogue. */
  private readonly convResiduals: ReadonlyMap<NodeProto, ResidualFusion>;
  /** Nodes of this call that a fused MatMul has already done. */
  private readonly absorbed = new Set<NodeProto>();
  /** Conv weights re-laid for the tuned kernel, once per initializer. */
  private readonly convWeights = new Map<HostTensor, DeviceTensor>();

  constructor(
    readonly ctx: GpuContext,
    readonly model: ModelProto,
    private readonly options: ExecutorOptions = {},
  ) {
    const every = options.submitEvery;
    if (
      every !== undefined &&
      !(every === Number.POSITIVE_INFINITY || (Number.isInteger(every) && every >= 1))
    )
      throw new Error(
        `submitEvery must be a whole number of launches (1 or more) or Infinity, not ${every}`,
      );
    const graph = model.graph;
    for (const t of graph.initializer ?? [])
      this.initializers.set(t.name ?? "", decodeTensorProto(t));
    for (const t of this.initializers.values()) this.initializerSet.add(t);
    this.order = topologicalOrder(graph);
    this.order.forEach((node, i) => {
      for (const name of nodeReads(node)) this.lastUse.set(name, i);
    });
    for (const out of graph.output) this.lastUse.set(out.name, Number.POSITIVE_INFINITY);
    this.checkSupported(graph);
    // A float16 model (the builders' fp16 graph) runs in f16 storage, any other in f32.
    const half = (graph.initializer ?? []).some((t) => t.dataType === 10);
    this.storage = options.storage ?? (half ? "f16" : "f32");
    if (this.storage === "f16" && !ctx.capabilities.features.has("shader-f16"))
      throw new Error(
        `the kernels engine runs float16 models in f16, and this adapter (${ctx.capabilities.description}) has no shader-f16: use --dtype fp32, or --engine onnxruntime`,
      );
    this.variant = chooseKernelVariant(ctx.capabilities, this.storage, this.options.kernelPath);
    this.linears = linearFusions(this.order, graph, this.initializers, nodeReads);
    this.groupNorms = groupNormFusions(this.order, graph, this.initializers, nodeReads);
    this.convResiduals = convResidualFusions(this.order, graph, this.initializers, nodeReads);
  }

  get inputNames(): string[] {
    const init = new Set(this.initializers.keys());
    return this.model.graph.input.map((i) => i.name).filter((n) => !init.has(n));
  }

  /** The tuned kernels' path and the storage type: `tensor cores, f16`, `portable, f32`, ... */
  get kernelPath(): string {
    return kernelPathLabel({ path: this.variant.path, storage: this.storage });
  }

  get outputNames(): string[] {
    return this.model.graph.output.map((o) => o.name);
  }

  /** The storage type of its float tensors on the device (f16 for a float16 model). */
  get storageType(): Storage {
    return this.storage;
  }

  /** Fails at load, naming the first operator this engine has no implementation of. */
  private checkSupported(graph: GraphProto): void {
    for (const node of graph.node) {
      const known =
        (node.domain === "com.microsoft" && node.opType === "MultiHeadAttention") ||
        ((node.domain ?? "") === "" && SUPPORTED.has(node.opType));
      if (!known)
        throw unsupported(`the operator ${node.domain ? `${node.domain}.` : ""}${node.opType}`);
      for (const a of node.attribute ?? []) if (a.g) this.checkSupported(a.g);
    }
  }

  private attrs(node: NodeProto): Attributes {
    let a = this.attributes.get(node);
    if (!a) {
      a = attributesOf(node);
      this.attributes.set(node, a);
    }
    return a;
  }

  /** Runs the graph on host feeds; returns every graph output on the host. */
  async run(feeds: ReadonlyMap<string, HostTensor>): Promise<Map<string, HostTensor>> {
    return (await this.runKeeping(feeds, new Set())) as Map<string, HostTensor>;
  }

  /**
   * Runs the graph on feeds from the host or the device; the float outputs named in `keep` stay
   * on the device (their buffers pass to the caller, in this executor's storage), the others
   * come back to the host. Device feeds are only read: they stay the caller's.
   */
  async runKeeping(
    feeds: ReadonlyMap<string, HostTensor | ResidentBuffer>,
    keep: ReadonlySet<string>,
  ): Promise<Map<string, HostTensor | ResidentBuffer>> {
    const key = this.callKey(feeds, keep);
    if (key !== undefined && this.options.compileAhead !== false && !this.walkedAhead.has(key)) {
      this.walkedAhead.add(key);
      if (!this.plans.some((p) => p.key === key)) {
        this.dry = true;
        try {
          await this.walk(feeds, keep);
        } catch (error) {
          // The end of a compile-ahead walk (COMPILED_AHEAD), or a failure the real walk meets
          // again and reports.
          if (error !== COMPILED_AHEAD && this.options.onCompileAheadError)
            this.options.onCompileAheadError(error as Error);
        } finally {
          this.dry = false;
        }
      }
    }
    return this.walk(feeds, keep);
  }

  /** The call's replay signature, or undefined where calls are never replayed. */
  private callKey(
    feeds: ReadonlyMap<string, HostTensor | ResidentBuffer>,
    keep: ReadonlySet<string>,
  ): string | undefined {
    return this.options.replay !== false && !this.options.profile
      ? planKey(feeds, this.inputNames, keep, {
          splitK: this.options.splitK,
          portableTiling: this.options.portableTiling,
        })
      : undefined;
  }

  private async walk(
    feeds: ReadonlyMap<string, HostTensor | ResidentBuffer>,
    keep: ReadonlySet<string>,
  ): Promise<Map<string, HostTensor | ResidentBuffer>> {
    this.stats = emptyStats();
    this.untimedSubmits = 0;
    this.prepareSubmitTimer();
    for (const name of this.inputNames)
      if (!feeds.get(name))
        throw new Error(`missing input "${name}" (the model takes ${this.inputNames.join(", ")})`);
    const key = this.callKey(feeds, keep);
    if (key !== undefined && !this.dry) {
      const replayed = await this.replayIfPlanned(key, feeds);
      if (replayed) return replayed;
    }
    if (this.storage === "f16")
      this.uploadConvert ??= await this.ctx.pipeline({
        label: "engine convert",
        code: convertStorageKernel("f32", "f16"),
      });
    const capture =
      key !== undefined && !this.dry && !this.unreplayable.has(key) ? new Capture(key) : undefined;
    this.capture = capture;
    const scope = new Scope();
    for (const [name, t] of this.initializers) scope.values.set(name, t);
    // Device feeds in this storage are borrowed: pinned by one reference more than the call
    // drops, and forgotten (never pooled or destroyed) when it ends.
    const borrowed = new Set<GPUBuffer>();
    const kept = new Map<GPUBuffer, ResidentBuffer>();
    const planned = new Map<string, PlannedOutput>();
    let done = false;
    try {
      for (const name of this.inputNames) {
        const feed = feeds.get(name) as HostTensor | ResidentBuffer;
        if (!("buffer" in feed)) {
          scope.values.set(name, feed);
          capture?.varying.set(feed, name);
          continue;
        }
        capture?.feeds.set(name, feed.buffer);
        let t: DeviceTensor = { kind: "device", buffer: feed.buffer, dims: feed.dims };
        if (feed.storage === this.storage) {
          borrowed.add(feed.buffer);
          this.retain(t);
        } else t = await this.convertedFeed(feed);
        this.retain(t);
        scope.values.set(name, t);
      }
      await this.runNodes(this.order, scope, true);
      // A compile-ahead walk ends here, through the failed call's clean-up: it ran nothing.
      if (this.dry) throw COMPILED_AHEAD;
      if (capture) capture.outputsPhase = true;
      const outputs = new Map<string, HostTensor | ResidentBuffer>();
      const readbacks = this.stats.readbacks;
      for (const name of this.outputNames) {
        const v = scope.get(name);
        if (!v) throw new Error(`the graph did not produce its output "${name}"`);
        const float = v.kind === "device" || v.dtype === "float32";
        const out =
          keep.has(name) && float
            ? await this.keepOnDevice(v, borrowed, kept)
            : await this.toHost(v);
        outputs.set(name, out);
        if (capture) planned.set(name, plannedOutput(capture, v, out));
      }
      this.flush();
      this.stats.readbacks = readbacks;
      await this.finishSubmitTimer();
      if (this.options.profile) this.profiledCalls++;
      done = true;
      return outputs;
    } finally {
      this.capture = undefined;
      const planning = done && capture !== undefined && capture.invalid === undefined;
      const planOwned: GPUBuffer[] = [];
      this.pending = [];
      this.pendingLabels = [];
      if (!done && this.submitTimer) {
        // Passes of a failed call would be read with the next call's: start that one afresh.
        this.submitTimer.destroy();
        this.submitTimer = undefined;
      }
      this.absorbed.clear();
      for (const v of scope.values.values()) if (v.kind === "device") this.drop(v);
      for (const t of this.runUploads.values())
        if (planning && this.owned.has(t.buffer)) {
          // The plan keeps the call's uploads: replays write into them.
          this.refs.delete(t.buffer);
          this.owned.delete(t.buffer);
          planOwned.push(t.buffer);
        } else this.drop(t);
      this.runUploads = new Map();
      if (planning) planOwned.push(...this.scratch);
      else for (const b of this.scratch) b.destroy();
      this.scratch = [];
      this.transient.clear();
      // Borrowed feeds stay the caller's; kept outputs pass to the caller, or back to the pool
      // when the call failed before handing them over.
      for (const b of borrowed) this.refs.delete(b);
      for (const [b, r] of kept) {
        this.refs.delete(b);
        if (!done)
          this.ctx.release({ buffer: b, shape: r.dims, storage: r.storage, size: sizeOf(r.dims) });
      }
      if (planning && capture) this.addPlan(capture, planned, planOwned);
      else if (done && capture?.invalid !== undefined) this.markUnreplayable(capture.key);
    }
  }

  /** Makes, keeps or drops the timeSubmits timer as the options ask, before a call. */
  private prepareSubmitTimer(): void {
    if (this.options.timeSubmits) {
      if (!this.ctx.hasTimestamps)
        throw new Error(
          "timing the kernels engine's submits needs an adapter with timestamp-query",
        );
      if (this.options.profile)
        throw new Error(
          "timeSubmits and profile time the same passes two ways: ask for one of them",
        );
      this.submitTimer ??= this.ctx.createTimer(TIMED_SUBMITS);
    } else {
      this.submitTimer?.destroy();
      this.submitTimer = undefined;
    }
  }

  /** Reads the timeSubmits timer's passes of this call into its statistics. */
  private async finishSubmitTimer(): Promise<void> {
    if (!this.submitTimer) return;
    this.ctx.resolveTimer(this.submitTimer);
    this.stats.gpu = {
      ...submitSpans(await this.submitTimer.readSpans()),
      untimed: this.untimedSubmits,
    };
  }

  /**
   * Turns a captured call into a plan (replay.ts): the pooled buffers its tape touches, which
   * must all be back in the pool now, and bind groups for the launches that had none. A call
   * whose tape touches a pooled buffer held elsewhere (a call of another runner on the context
   * that ran meanwhile) is not planned; the next call of its signature is captured again.
   */
  private addPlan(
    capture: Capture,
    outputs: ReadonlyMap<string, PlannedOutput>,
    owned: readonly GPUBuffer[],
  ): void {
    const substituted = new Set<GPUBuffer>(capture.feeds.values());
    for (const out of outputs.values()) if (out.kind === "keep") substituted.add(out.buffer);
    const pooled = new Set<GPUBuffer>();
    const pool = this.ctx.buffers;
    const touch = (b: GPUBuffer): boolean => {
      if (substituted.has(b) || !pool.has(b)) return true;
      pooled.add(b);
      return pool.isFree(b);
    };
    const dynamic = new Set<number>();
    let held = false;
    const tape = capture.tape.map((entry, i) => {
      for (const b of entry.launch.buffers) {
        held = !touch(b) || held;
        if (substituted.has(b)) dynamic.add(i);
      }
      if (entry.launch.bindGroup || dynamic.has(i)) return entry;
      return {
        label: entry.label,
        launch: {
          ...entry.launch,
          bindGroup: this.ctx.bindGroup(entry.launch.pipeline, entry.launch.buffers),
        },
      };
    });
    for (const out of outputs.values()) if (out.kind === "read") held = !touch(out.buffer) || held;
    if (held) {
      for (const b of owned) b.destroy();
      return;
    }
    this.plans.unshift({
      key: capture.key,
      tape,
      dynamic,
      steps: capture.steps,
      guards: capture.guards,
      uploads: capture.uploads,
      feeds: capture.feeds,
      pooled: [...pooled],
      owned,
      outputs,
      kernels: { ...this.stats.kernels },
    });
    for (const dropped of this.plans.splice(MAX_PLANS)) for (const b of dropped.owned) b.destroy();
  }

  /**
   * The call replayed from a plan of this signature whose guards it passes (replay.ts), or
   * undefined where none applies (the call then walks the graph and is captured).
   */
  private async replayIfPlanned(
    key: string,
    feeds: ReadonlyMap<string, HostTensor | ResidentBuffer>,
  ): Promise<Map<string, HostTensor | ResidentBuffer> | undefined> {
    const hostFeeds = new Map<string, HostTensor>();
    for (const [name, feed] of feeds) if (!("buffer" in feed)) hostFeeds.set(name, feed);
    for (const candidate of [...this.plans]) {
      if (candidate.key !== key) continue;
      let values: Map<string, HostTensor> | undefined;
      try {
        values = replayHostValues(candidate, hostFeeds, (node, inputs) =>
          runHostOp(node, inputs, this.attrs(node)),
        );
      } catch {
        // The walk reports what failed, in its own words.
        this.dropPlan(candidate);
        return undefined;
      }
      if (!values) continue;
      const made = values;
      if (
        candidate.uploads.some((slot) => {
          const v = made.get(slot.name);
          return !v || !sameShape(v.dims, slot.dims);
        })
      )
        continue;
      const plan = this.takePlanBuffers(candidate);
      try {
        return await this.replay(plan, made, feeds);
      } catch (error) {
        this.dropPlan(plan);
        // Passes of a failed call would be read with the next call's, as in the walk.
        this.submitTimer?.destroy();
        this.submitTimer = undefined;
        throw error;
      } finally {
        this.pending = [];
        this.pendingLabels = [];
        for (const b of plan.pooled) this.ctx.buffers.release(b);
      }
    }
    return undefined;
  }

  /**
   * Takes a plan's pooled buffers from the pool for a replay. One held elsewhere (another
   * runner on the context took it between calls) is replaced by another free buffer of its size
   * for good: the plan's launches on it get new bind groups once, and the plan keeps the new
   * buffer from then on. Buffers the replay substitutes (the capture's feeds and kept outputs)
   * are never taken as replacements.
   */
  private takePlanBuffers(plan: ReplayPlan): ReplayPlan {
    const pool = this.ctx.buffers;
    const free = plan.pooled.filter((b) => pool.isFree(b));
    pool.take(free);
    if (free.length === plan.pooled.length) return plan;
    const taken = new Set(free);
    const excluded = new Set<GPUBuffer>(plan.feeds.values());
    for (const out of plan.outputs.values()) if (out.kind === "keep") excluded.add(out.buffer);
    const swap = new Map<GPUBuffer, GPUBuffer>();
    const rejected: GPUBuffer[] = [];
    for (const b of plan.pooled) {
      if (taken.has(b)) continue;
      let other = pool.acquire(b.size, "engine activation");
      while (excluded.has(other)) {
        rejected.push(other);
        other = pool.acquire(b.size, "engine activation");
      }
      swap.set(b, other);
    }
    for (const b of rejected) pool.release(b);
    const tape = plan.tape.map((entry, i) => {
      if (!entry.launch.buffers.some((b) => swap.has(b))) return entry;
      const { pipeline, workgroups } = entry.launch;
      const buffers = entry.launch.buffers.map((b) => swap.get(b) ?? b);
      if (plan.dynamic.has(i))
        return { label: entry.label, launch: { pipeline, workgroups, buffers } };
      this.stats.bindGroups++;
      return {
        label: entry.label,
        launch: { pipeline, workgroups, buffers, bindGroup: this.ctx.bindGroup(pipeline, buffers) },
      };
    });
    const outputs = new Map<string, PlannedOutput>();
    for (const [name, out] of plan.outputs)
      outputs.set(
        name,
        out.kind === "read" ? { ...out, buffer: swap.get(out.buffer) ?? out.buffer } : out,
      );
    const repaired: ReplayPlan = {
      ...plan,
      tape,
      outputs,
      pooled: plan.pooled.map((b) => swap.get(b) ?? b),
    };
    this.plans[this.plans.indexOf(plan)] = repaired;
    return repaired;
  }

  private markUnreplayable(key: string): void {
    if (this.unreplayable.size >= MAX_UNREPLAYABLE) this.unreplayable.clear();
    this.unreplayable.add(key);
  }

  private dropPlan(plan: ReplayPlan): void {
    const at = this.plans.indexOf(plan);
    if (at >= 0) this.plans.splice(at, 1);
    for (const b of plan.owned) b.destroy();
  }

  /** Records a plan's launches for this call's feeds (replayIfPlanned). */
  private async replay(
    plan: ReplayPlan,
    values: ReadonlyMap<string, HostTensor>,
    feeds: ReadonlyMap<string, HostTensor | ResidentBuffer>,
  ): Promise<Map<string, HostTensor | ResidentBuffer>> {
    this.stats.replayed = true;
    this.stats.kernels = { ...plan.kernels };
    for (const slot of plan.uploads) {
      // replayIfPlanned checked that each slot's value is there with the slot's shape.
      const bytes = uploadElements(values.get(slot.name) as HostTensor, slot.storage);
      // Host tensors live in plain ArrayBuffers (never shared): a view of the bytes, no copy.
      const view = new Uint8Array(bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
      if (bytes.byteLength % 4 === 0) this.ctx.device.queue.writeBuffer(slot.buffer, 0, view);
      else {
        // Queue writes are whole 4-byte words: an odd f16 count gets one padding element.
        const padded = new Uint8Array(bytes.byteLength + 2);
        padded.set(view);
        this.ctx.device.queue.writeBuffer(slot.buffer, 0, padded);
      }
    }
    // This call's device feeds, and fresh pooled buffers for the outputs it hands over, in
    // place of the capture's.
    const swap = new Map<GPUBuffer, GPUBuffer>();
    for (const [name, buffer] of plan.feeds) {
      const feed = feeds.get(name);
      if (!feed || !("buffer" in feed))
        throw new Error(`replaying a call: no device feed "${name}"`);
      swap.set(buffer, feed.buffer);
    }
    const handed: GPUBuffer[] = [];
    let done = false;
    try {
      for (const out of plan.outputs.values())
        if (out.kind === "keep") {
          const fresh = this.ctx.buffers.acquire(out.bytes, "engine activation");
          handed.push(fresh);
          swap.set(out.buffer, fresh);
        }
      plan.tape.forEach((entry, i) => {
        const launch = plan.dynamic.has(i)
          ? {
              pipeline: entry.launch.pipeline,
              workgroups: entry.launch.workgroups,
              buffers: entry.launch.buffers.map((b) => swap.get(b) ?? b),
            }
          : entry.launch;
        if (!launch.bindGroup) this.stats.bindGroups++;
        this.stats.launches++;
        this.enqueue(launch, entry.label);
      });
      this.flush();
      const outputs = new Map<string, HostTensor | ResidentBuffer>();
      for (const [name, out] of plan.outputs) {
        if (out.kind === "read") {
          const buffer = swap.get(out.buffer) ?? out.buffer;
          const data = await this.ctx.read({
            buffer,
            shape: out.dims,
            storage: this.storage,
            size: sizeOf(out.dims),
          });
          outputs.set(name, { kind: "host", dtype: "float32", data, dims: out.dims });
        } else if (out.kind === "keep")
          outputs.set(name, {
            buffer: swap.get(out.buffer) ?? out.buffer,
            dims: out.dims,
            storage: this.storage,
          });
        else if (out.kind === "constant")
          // A copy: the plan keeps its value for the next replay.
          outputs.set(name, { ...out.value, data: out.value.data.slice() });
        else {
          const v = values.get(out.name);
          if (!v) throw new Error(`replaying a call: no value for the output "${name}"`);
          outputs.set(name, v);
        }
      }
      await this.finishSubmitTimer();
      done = true;
      return outputs;
    } finally {
      if (!done) for (const b of handed) this.ctx.buffers.release(b);
    }
  }

  /** A device feed in the other storage type, converted into a pooled buffer of this call. */
  private async convertedFeed(feed: ResidentBuffer): Promise<DeviceTensor> {
    const t = this.allocate(feed.dims);
    const n = sizeOf(feed.dims);
    await this.launch(
      "convert",
      convertStorageKernel(feed.storage, this.storage),
      [feed.buffer, t.buffer, this.paramBuffer([n])],
      n,
    );
    return t;
  }

  /**
   * An output handed to the caller on the device. A pooled activation of this call passes as it
   * is (pinned so the call's end does not pool it); anything else (a host value, a weight, an
   * upload of this call, a borrowed feed, a buffer already handed over under another name) is
   * copied into a pooled buffer first.
   */
  private async keepOnDevice(
    v: Value,
    borrowed: ReadonlySet<GPUBuffer>,
    kept: Map<GPUBuffer, ResidentBuffer>,
  ): Promise<ResidentBuffer> {
    let t: DeviceTensor;
    if (v.kind === "host") {
      this.capture?.invalidate("a host value is kept on the device");
      // Launches still pending may read pooled buffers released in this call: submit them
      // before a queue write into one lands.
      this.flush();
      const g = this.ctx.upload(Float32Array.from(v.data), v.dims, this.storage, "engine output");
      t = { kind: "device", buffer: g.buffer, dims: [...v.dims] };
    } else if (
      this.owned.has(v.buffer) ||
      [...this.runUploads.values()].some((t) => t.buffer === v.buffer) ||
      borrowed.has(v.buffer) ||
      kept.has(v.buffer) ||
      !this.refs.has(v.buffer)
    ) {
      t = this.allocate(v.dims);
      const strides = stridesOf(v.dims);
      await this.copy(v, 0, strides, t, 0, strides, v.dims);
    } else {
      t = v;
    }
    this.retain(t);
    const resident: ResidentBuffer = { buffer: t.buffer, dims: [...v.dims], storage: this.storage };
    kept.set(t.buffer, resident);
    return resident;
  }

  private async runNodes(
    nodes: readonly NodeProto[],
    scope: Scope,
    topLevel: boolean,
  ): Promise<void> {
    for (let index = 0; index < nodes.length; index++) {
      const node = nodes[index];
      // Nodes a fused MatMul did (its bias Add, a GEGLU) have their output already.
      const fused = this.absorbed.delete(node);
      const inputs = node.input.map((name) => (name === "" ? undefined : scope.get(name)));
      node.input.forEach((name, i) => {
        if (!fused && name !== "" && !inputs[i])
          throw new Error(`${node.opType}: input "${name}" is not computed`);
      });
      let outputs: Value[] = [];
      let names = node.output;
      if (!fused)
        try {
          const fusion = topLevel ? this.linears.get(node) : undefined;
          const norm = topLevel ? this.groupNorms.get(node) : undefined;
          const convResidual = topLevel ? this.convResiduals.get(node) : undefined;
          const linear = fusion
            ? await this.fusedLinear(inputs, fusion, scope)
            : norm
              ? await this.fusedGroupNorm(inputs, norm, scope)
              : convResidual
                ? await this.fusedConvResidual(node, inputs, convResidual, scope)
                : null;
          if (linear) {
            outputs = [linear.value];
            names = [linear.output];
            for (const n of linear.absorbed) this.absorbed.add(n);
          } else outputs = await this.runNode(node, inputs, scope, topLevel);
        } catch (error) {
          const message = (error as Error).message;
          throw message.includes("--engine onnxruntime") || message.startsWith(node.opType)
            ? error
            : new Error(`${node.opType} "${node.name ?? ""}": ${message}`);
        }
      names.forEach((name, i) => {
        if (name === "" || !outputs[i]) return;
        const v = outputs[i];
        if (v.kind === "device") this.retain(v);
        else if (
          topLevel &&
          this.capture?.isVarying(v) &&
          this.capture.varying.get(v) === undefined
        )
          // Its first name: the one a replay's steps make it under.
          this.capture.varying.set(v, name);
        scope.values.set(name, v);
      });
      if (!topLevel) continue;
      // Free GPU values read for the last time by this node.
      for (const name of new Set(nodeReads(node))) {
        if (this.lastUse.get(name) !== index) continue;
        const v = scope.values.get(name);
        if (v?.kind === "device") {
          this.drop(v);
          scope.values.delete(name);
        }
      }
    }
  }

  private retain(t: DeviceTensor): void {
    this.refs.set(t.buffer, (this.refs.get(t.buffer) ?? 0) + 1);
  }

  private drop(t: DeviceTensor): void {
    const n = (this.refs.get(t.buffer) ?? 1) - 1;
    if (n > 0) this.refs.set(t.buffer, n);
    else if (this.owned.has(t.buffer)) {
      this.refs.delete(t.buffer);
      this.owned.delete(t.buffer);
      t.buffer.destroy();
    } else {
      this.refs.delete(t.buffer);
      this.releaseTemporary(t);
    }
  }

  private async runNode(
    node: NodeProto,
    inputs: (Value | undefined)[],
    scope: Scope,
    topLevel: boolean,
  ): Promise<Value[]> {
    const op = node.opType;
    const attrs = this.attrs(node);
    if (op === "If") {
      const cond = await this.toHost(inputs[0] as Value);
      const capture = this.capture;
      if (capture?.isVarying(cond)) {
        if (topLevel)
          capture.guards.push({
            kind: "branch",
            name: capture.nameOf(cond),
            thenBranch: !!cond.data[0],
          });
        else capture.invalidate("an If inside a subgraph depends on the feeds");
      }
      const branch = node.attribute?.find(
        (a) => a.name === (cond.data[0] ? "then_branch" : "else_branch"),
      )?.g;
      if (!branch) throw new Error("If without its branches");
      const inner = new Scope(scope);
      for (const t of branch.initializer ?? [])
        inner.values.set(t.name ?? "", decodeTensorProto(t));
      // The branch's values go back to the pool when it ends; the references of the outputs the
      // outer scope keeps (those with a name) pass to it, which takes its own as this returns.
      const handed = new Set<GPUBuffer>();
      try {
        await this.runNodes(topologicalOrder(branch, true), inner, false);
        const outputs = branch.output.map((o) => {
          const v = inner.get(o.name);
          if (!v) throw new Error(`If: the branch did not produce "${o.name}"`);
          return v;
        });
        outputs.forEach((v, i) => {
          if (v.kind === "device" && (node.output[i] ?? "") !== "") handed.add(v.buffer);
        });
        return outputs;
      } finally {
        for (const v of inner.values.values())
          if (v.kind !== "device") continue;
          else if (handed.has(v.buffer))
            this.refs.set(v.buffer, (this.refs.get(v.buffer) ?? 1) - 1);
          else this.drop(v);
      }
    }
    if (op === "Shape" && inputs[0]?.kind === "device") {
      const dims = inputs[0].dims;
      return (
        runHostOp(
          node,
          [{ kind: "host", dtype: "float32", data: new Float32Array(0), dims }],
          attrs,
        ) ?? []
      );
    }
    const allHost = inputs.every((v) => v === undefined || v.kind === "host");
    if (allHost && !DEVICE_ONLY.has(op) && (node.domain ?? "") === "") {
      const out = runHostOp(node, inputs as (HostTensor | undefined)[], attrs);
      if (out) {
        this.noteHostStep(node, inputs as (HostTensor | undefined)[], out, topLevel);
        return out;
      }
    }
    const device = await this.deviceOp(node, inputs, attrs);
    if (device) return device;
    // No GPU kernel for this operator: read its inputs back and evaluate it on the host.
    const hostInputs: (HostTensor | undefined)[] = [];
    for (const v of inputs) hostInputs.push(v ? await this.toHost(v) : undefined);
    const out = runHostOp(node, hostInputs, attrs);
    if (!out) throw unsupported(`the operator ${op}`);
    this.stats.hostFallbacks[op] = (this.stats.hostFallbacks[op] ?? 0) + 1;
    return out;
  }

  /**
   * A host node of a call being captured: where it reads a value made from the feeds, its
   * outputs are too, and a replay evaluates it again (replay.ts).
   */
  private noteHostStep(
    node: NodeProto,
    inputs: readonly (HostTensor | undefined)[],
    out: readonly HostTensor[],
    topLevel: boolean,
  ): void {
    const capture = this.capture;
    // A shape depends on the feeds' shapes only, which the plan's key holds.
    if (!capture || node.opType === "Shape" || !inputs.some((v) => capture.isVarying(v))) return;
    if (!topLevel) capture.invalidate("a host node inside a subgraph depends on the feeds");
    const stepInputs = inputs.map((v) =>
      v !== undefined && capture.isVarying(v) ? capture.nameOf(v) : v,
    );
    for (const o of out) if (!capture.varying.has(o)) capture.varying.set(o, undefined);
    capture.steps.push({ node, inputs: stepInputs, outputDims: out.map((o) => o.dims) });
  }

  /** Submits the recorded launches as one compute pass (one pass per launch when profiling). */
  private flush(): void {
    if (this.pending.length === 0) return;
    if (this.options.profile) this.dispatchTimed();
    else if (this.submitTimer && !this.submitTimer.full)
      // Resolved once after the call: a resolve per submit would run between the timed passes.
      this.ctx.dispatch(this.pending, {
        timer: this.submitTimer,
        label: "submit",
        deferResolve: true,
      });
    else {
      if (this.submitTimer) this.untimedSubmits++;
      this.ctx.dispatch(this.pending);
    }
    this.stats.submits++;
    this.pending = [];
    this.pendingLabels = [];
  }

  /** Each pending launch in a timed pass of its own; the times are read after the call. */
  private dispatchTimed(): void {
    if (!this.ctx.hasTimestamps)
      throw new Error("profiling the kernels engine needs an adapter with timestamp-query");
    // A query set holds at most 4096 timestamps: 2 per pass.
    const chunk = 1024;
    for (let start = 0; start < this.pending.length; start += chunk) {
      const timer = this.ctx.createTimer(chunk);
      for (let i = start; i < Math.min(start + chunk, this.pending.length); i++)
        this.ctx.dispatch([this.pending[i]], { timer, label: this.pendingLabels[i] });
      this.pendingTimes.push(this.ctx.whileAlive(timer.read()).finally(() => timer.destroy()));
    }
  }

  /** The GPU time per kernel label over the profiled calls so far (`profile` option). */
  async profile(): Promise<KernelProfile> {
    for (const times of await Promise.all(this.pendingTimes.splice(0)))
      for (const { label, ms } of times) {
        const entry = this.timings.get(label) ?? { ms: 0, launches: 0 };
        entry.ms += ms;
        entry.launches++;
        this.timings.set(label, entry);
      }
    return { calls: this.profiledCalls, byKernel: new Map(this.timings) };
  }

  async toHost(v: Value): Promise<HostTensor> {
    if (v.kind === "host") return v;
    if (this.capture && !this.capture.outputsPhase)
      this.capture.invalidate("a GPU value is read back mid-call");
    this.flush();
    this.stats.readbacks++;
    const data = await this.ctx.read({
      buffer: v.buffer,
      shape: v.dims,
      storage: this.storage,
      size: sizeOf(v.dims),
    });
    return { kind: "host", dtype: "float32", data, dims: v.dims };
  }

  private toDevice(v: Value): DeviceTensor {
    if (v.kind === "device") return v;
    if (v.dtype === "bool" || v.dtype === "int64" || v.dtype === "int32")
      throw unsupported(`an ${v.dtype} tensor as a GPU operand`);
    const persistent = this.initializerSet.has(v);
    const cache = persistent ? this.weightsOnDevice : this.runUploads;
    let t = cache.get(v);
    if (!t) {
      t = persistent ? this.uploadOwned(v, "engine weight") : this.uploadInput(v);
      this.retain(t);
      cache.set(v, t);
    }
    return t;
  }

  /**
   * A host value of this call on the device. In f16 storage it goes up as f32 into a buffer of
   * its own and a launch converts it into a pooled buffer: the host converts nothing, and a
   * replayed call writes the value's own bytes (its feeds, about 250,000 values at 1024 px, are
   * uploaded before the call's first kernel can start).
   */
  private uploadInput(v: HostTensor): DeviceTensor {
    const convert = this.storage === "f16" ? this.uploadConvert : undefined;
    const staged = this.uploadOwned(v, "engine input", convert ? "f32" : this.storage);
    this.transient.add(staged.buffer);
    if (this.capture?.isVarying(v))
      this.capture.uploads.push({
        name: this.capture.nameOf(v),
        buffer: staged.buffer,
        dims: v.dims,
        storage: convert ? "f32" : this.storage,
      });
    if (!convert) return staged;
    // The staging buffer lives for the call (or with its plan), as index lists do.
    this.owned.delete(staged.buffer);
    this.scratch.push(staged.buffer);
    const t = this.allocate(v.dims);
    const n = sizeOf(v.dims);
    this.record("convert", {
      pipeline: convert,
      buffers: [staged.buffer, t.buffer, this.paramBuffer([n])],
      workgroups: grid(n),
    });
    return t;
  }

  /**
   * A buffer of its own for host values, filled at creation. Not from the pool: a queue write
   * into a pooled buffer would land before the launches still pending on it, so it would force
   * a submit; a fresh mapped buffer needs none, and the whole call stays one submit.
   */
  private uploadOwned(v: HostTensor, label: string, storage = this.storage): DeviceTensor {
    const data = uploadElements(v, storage);
    this.ctx.checkSize(data.length, storage, label);
    const buffer = this.ctx.device.createBuffer({
      size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
      usage: BUFFER_USAGE.storage,
      mappedAtCreation: true,
      label,
    });
    // Mapped ranges are whole 4-byte words: an odd f16 count maps one element more.
    new Uint8Array(buffer.getMappedRange(0, Math.ceil(data.byteLength / 4) * 4)).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    buffer.unmap();
    this.owned.add(buffer);
    return { kind: "device", buffer, dims: v.dims };
  }

  /** Destroys the weights on the GPU (the runner's release). */
  destroy(): void {
    for (const plan of [...this.plans]) this.dropPlan(plan);
    this.unreplayable.clear();
    for (const t of this.weightsOnDevice.values()) t.buffer.destroy();
    this.weightsOnDevice.clear();
    for (const t of this.convWeights.values()) t.buffer.destroy();
    this.convWeights.clear();
    for (const b of this.params.values()) b.destroy();
    this.params.clear();
    this.bindGroups.clear();
    this.submitTimer?.destroy();
    this.submitTimer = undefined;
  }

  private allocate(dims: readonly number[]): DeviceTensor {
    const g = this.ctx.allocate(dims, this.storage, "engine activation");
    return { kind: "device", buffer: g.buffer, dims: [...dims] };
  }

  private paramBuffer(values: readonly number[]): GPUBuffer {
    const key = values.join(",");
    let buffer = this.params.get(key);
    if (!buffer) {
      const data = Int32Array.from(values);
      buffer = this.ctx.device.createBuffer({
        size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
        usage: BUFFER_USAGE.storage,
        label: "engine parameters",
      });
      this.ctx.device.queue.writeBuffer(buffer, 0, data);
      this.params.set(key, buffer);
    }
    return buffer;
  }

  private indexBuffer(values: ArrayLike<number>): GPUBuffer {
    const data = Int32Array.from(values as ArrayLike<number>);
    const buffer = this.ctx.device.createBuffer({
      size: Math.max(16, Math.ceil(data.byteLength / 16) * 16),
      usage: BUFFER_USAGE.storage,
      label: "engine indices",
    });
    this.ctx.device.queue.writeBuffer(buffer, 0, data);
    this.scratch.push(buffer);
    this.transient.add(buffer);
    return buffer;
  }

  private async launch(
    label: string,
    code: string,
    buffers: GPUBuffer[],
    threads: number,
    groups?: [number, number, number],
  ): Promise<void> {
    if (threads === 0) return;
    const pipeline = await this.ready(this.ctx.pipeline({ label: `engine ${label}`, code }));
    if (pipeline) this.record(label, { pipeline, buffers, workgroups: groups ?? grid(threads) });
  }

  /**
   * A kernel or pipeline being made: awaited, except in a compile-ahead walk, which only starts
   * it (undefined) and goes on. A failure there is left to the real walk, which asks again (a
   * failed preparation is not memoised) and reports it.
   */
  private async ready<T>(made: Promise<T>): Promise<T | undefined> {
    if (!this.dry) return made;
    made.catch(() => undefined);
    return undefined;
  }

  /**
   * Records a tuned GEMM's or convolution's launches. A split-K kernel's partial sums take a
   * pooled f32 buffer, handed back once both its launches are recorded; its reduction counts
   * as `<label> reduce`.
   */
  private recordMatmul(label: string, kernel: MatmulKernel, buffers: GPUBuffer[]): void {
    const partials = kernel.partials
      ? this.ctx.allocate([kernel.partials], "f32", "partial sums")
      : undefined;
    kernel.launches(buffers, partials?.buffer).forEach((launch, i) => {
      this.record(i === 0 ? label : `${label} reduce`, launch, kernel.spec.label);
    });
    if (partials) this.ctx.release(partials);
  }

  /** The GEMM and convolution tile asked for, if any (undefined: the kernel's default). */
  private get tiling(): Tiling | undefined {
    return enginePortableTiling(this.variant, this.ctx.capabilities, this.options.portableTiling);
  }

  /** Launches per submit (engineSubmitEvery). */
  private get submitEvery(): number {
    return engineSubmitEvery(this.ctx.capabilities, this.options.submitEvery);
  }

  /** The tuned GEMM's and convolution's split-K option: unsplit where the options ask so. */
  private get splitOption(): { readonly splitK?: 1 } {
    return this.options.splitK === false ? { splitK: 1 } : {};
  }

  /**
   * Adds a launch to the pass being recorded. `label` names the kernel in the call's statistics;
   * a profile times it under `label: detail` (a tuned kernel's shape and tile) where one is given.
   */
  private record(label: string, launch: KernelLaunch, detail?: string): void {
    if (this.dry) return;
    const bound = this.withBindGroup(launch);
    const text = detail ? `${label}: ${detail}` : label;
    this.capture?.tape.push({ launch: bound, label: text });
    this.stats.launches++;
    this.stats.kernels[label] = (this.stats.kernels[label] ?? 0) + 1;
    this.enqueue(bound, text);
  }

  /** Adds a launch to the pending pass, submitting every `submitEvery` launches. */
  private enqueue(launch: KernelLaunch, label: string): void {
    this.pending.push(launch);
    this.pendingLabels.push(label);
    if (this.pending.length >= this.submitEvery) this.flush();
  }

  /** The launch with its bind group from the cache, where all its buffers outlive the call. */
  private withBindGroup(launch: KernelLaunch): KernelLaunch {
    if (launch.bindGroup) return launch;
    if (launch.buffers.some((b) => this.transient.has(b))) {
      this.stats.bindGroups++; // made when the pass is recorded
      return launch;
    }
    let key = `${this.id(launch.pipeline)}`;
    for (const b of launch.buffers) key += `,${this.id(b)}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      // Many sizes through one runner: start over rather than grow without bound.
      if (this.bindGroups.size >= MAX_BIND_GROUPS) this.bindGroups.clear();
      group = this.ctx.bindGroup(launch.pipeline, launch.buffers);
      this.bindGroups.set(key, group);
      this.stats.bindGroups++;
    }
    return { ...launch, bindGroup: group };
  }

  /** A number for a GPU object, the same for its whole life (bind-group cache keys). */
  private id(o: object): number {
    let id = this.ids.get(o);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(o, id);
    }
    return id;
  }

  /** A pooled buffer handed back at once: its last reader is already recorded in this pass. */
  private releaseTemporary(t: DeviceTensor): void {
    this.ctx.release({
      buffer: t.buffer,
      shape: t.dims,
      storage: this.storage,
      size: sizeOf(t.dims),
    });
  }

  /**
   * Records the tuned GEMM c = epilogue(a b + bias) into `out` (GemmShape's layout, or with
   * `planeSize` channels-first: gemm.ts; for GEGLU, b and the bias have 2 shape.n columns, hidden
   * then gate).
   */
  private async gemm(
    shape: GemmShape,
    a: DeviceTensor,
    b: DeviceTensor,
    out: DeviceTensor,
    bias?: DeviceTensor,
    epilogue: Epilogue = "none",
    residual?: DeviceTensor,
    planeSize?: number,
  ): Promise<void> {
    const options = {
      bias: bias !== undefined,
      epilogue,
      tiling: this.tiling,
      residual: residual !== undefined,
      ...(planeSize === undefined ? {} : { planeSize }),
      ...this.splitOption,
    };
    const kernel = await this.ready(
      this.gemms.get(JSON.stringify([shape, options]), () =>
        prepareGemm(this.ctx, this.variant, shape, options),
      ),
    );
    if (!kernel) return;
    const buffers = [a.buffer, b.buffer, out.buffer];
    if (bias) buffers.push(bias.buffer);
    if (residual) buffers.push(residual.buffer);
    this.recordMatmul("tuned gemm", kernel, buffers);
  }

  /**
   * The tuned convolution's plan for a Conv node's inputs, or undefined where the portable
   * kernel runs it: the tuned kernel reads weights re-laid on the host, so only constant weights
   * qualify, and its plan must take the shape.
   */
  private tunedConvPlan(
    x: readonly number[],
    weights: Value | undefined,
    attrs: Attributes,
  ): { plan: TunedConv; weights: HostTensor } | undefined {
    if (weights?.kind !== "host" || !this.initializerSet.has(weights)) return undefined;
    const plan = convPlan(
      x,
      weights.dims,
      {
        group: attrs.int("group", 1),
        autoPad: attrs.string("auto_pad", "NOTSET"),
        strides: attrs.ints("strides") ?? [1, 1],
        dilations: attrs.ints("dilations") ?? [1, 1],
        pads: attrs.ints("pads") ?? [0, 0, 0, 0],
      },
      this.variant,
      this.ctx.capabilities.limits,
      this.tiling,
    );
    return plan.kind === "tuned" ? { plan: plan.shape, weights } : undefined;
  }

  /**
   * A Conv and the residual Add after it (fusions.ts) as one tuned convolution, the residual in
   * its epilogue. Null where the tuned kernel does not take the Conv or the value added is not
   * exactly the output's shape: the nodes then run one by one.
   */
  private async fusedConvResidual(
    node: NodeProto,
    inputs: (Value | undefined)[],
    fusion: ResidualFusion,
    scope: Scope,
  ): Promise<{ value: DeviceTensor; output: string; absorbed: NodeProto[] } | null> {
    const added = scope.get(fusion.input);
    if (!inputs[0] || !added) return null;
    const tuned = this.tunedConvPlan(inputs[0].dims, inputs[1], attributesOf(node));
    if (!tuned) return null;
    const { batch, outChannels } = tuned.plan.shape;
    const out = convOutputSize(tuned.plan.shape);
    const dims = [batch, outChannels, out.height, out.width];
    if (!sameShape(added.dims, dims) || (added.kind === "host" && added.dtype !== "float32"))
      return null;
    const bias = inputs[2] ? this.toDevice(inputs[2]) : undefined;
    const value = await this.tunedConv(
      tuned.plan,
      this.toDevice(inputs[0]),
      tuned.weights,
      bias,
      this.toDevice(added),
    );
    return { value, output: fusion.add.output[0], absorbed: [fusion.add] };
  }

  /**
   * Conv on the tuned implicit-GEMM kernel, for the engine's NCHW tensors: with the
   * `channelsFirstConv` option (the VAE's large maps) the kernel reads the NCHW input (its tile
   * loads gather a pixel's channels from their planes, threads on adjacent pixels); otherwise,
   * and for inputs padded more than the kernel pads (asymmetric pads, written into a zero-filled
   * map), it reads an NHWC copy. It writes the NCHW output from its epilogue.
   * (Keeping activations NHWC between layers would be the other way; the engine's other kernels and
   * the graph's Reshapes assume ONNX's NCHW today. A 1x1 convolution would be a GEMM on NCHW
   * data for a batch of one only: the GEMM shares B across a batch, not the weights' A.) The weights, constant
   * initializers, are re-laid on the host once and kept on the GPU in the kernel's layout.
   */
  private async tunedConv(
    { shape, inputPads }: TunedConv,
    x: DeviceTensor,
    w: HostTensor,
    bias?: DeviceTensor,
    residual?: DeviceTensor,
  ): Promise<DeviceTensor> {
    // A channels-last input (a group norm wrote it so) is the kernel's NHWC input as it is.
    // Otherwise, asked to, and without padding of its own, the kernel reads the NCHW input as it
    // is; else the input is written into an NHWC map (zero-filled around it where padded).
    // Either way the kernel writes the NCHW output itself (plus the NCHW residual, if given).
    if (x.channelsLast && inputPads) throw new Error("a channels-last input to a padded Conv");
    const direct = !x.channelsLast && !inputPads && this.options.channelsFirstConv === true;
    const options = {
      bias: bias !== undefined,
      residual: residual !== undefined,
      tiling: this.tiling,
      channelsFirstInput: direct,
      channelsFirstOutput: true,
      ...this.splitOption,
    };
    const kernel = await this.ready(
      this.convs.get(JSON.stringify([shape, options]), () =>
        prepareConv(this.ctx, this.variant, shape, options),
      ),
    );
    const { batch, height, width, inChannels, outChannels } = shape;
    const out = convOutputSize(shape);
    // A compile-ahead walk (no kernel yet) uploads no weights: it only starts compiles.
    const weights = kernel && (await this.convWeightsOnDevice(w)).buffer;
    const record = (input: GPUBuffer, y: DeviceTensor) => {
      if (!kernel || !weights) return;
      const buffers = [input, weights, y.buffer];
      if (bias) buffers.push(bias.buffer);
      if (residual) buffers.push(residual.buffer);
      this.recordMatmul("tuned conv", kernel, buffers);
    };
    if (direct || x.channelsLast) {
      const y = this.allocate([batch, outChannels, out.height, out.width]);
      record(x.buffer, y);
      return y;
    }
    const xs = stridesOf(x.dims);
    const nhwc = this.allocate([batch, height, width, inChannels]);
    const ns = stridesOf(nhwc.dims);
    let offset = 0;
    if (inputPads) {
      // The padded map: zeros, then the input inside its border.
      const n = sizeOf(nhwc.dims);
      await this.launch(
        "fill",
        fillKernel(this.storage),
        [nhwc.buffer, this.paramBuffer([n, 0])],
        n,
      );
      offset = inputPads[0] * ns[1] + inputPads[1] * ns[2];
    }
    const [, c, h, wd] = x.dims;
    await this.copy(x, 0, [xs[0], xs[2], xs[3], xs[1]], nhwc, offset, ns, [batch, h, wd, c]);
    const y = this.allocate([batch, outChannels, out.height, out.width]);
    record(nhwc.buffer, y);
    this.releaseTemporary(nhwc);
    return y;
  }

  /**
   * A MatMul with its bias Add as one tuned GEMM, the bias in the epilogue (a Linear: one launch
   * and one activation write fewer), and with a GELU or a GEGLU after it, that too (for GEGLU
   * the GEMM writes hidden * GELU(gate), half the columns, in place of seven elementwise launches
   * and the Split's copies), or with the residual Add after it, or, for a transformer's proj_out,
   * writing the map's channel planes with the map added (no Transpose copy, no Add launch). Null where the GEMM does not take the MatMul's shape or the bias does not
   * span its columns: the nodes then run one by one. Where only the GEGLU's shapes do not fit
   * (a split that is not two halves of the last axis), the Linear alone is fused.
   */
  private async fusedLinear(
    inputs: (Value | undefined)[],
    fusion: LinearFusion,
    scope: Scope,
  ): Promise<{ value: DeviceTensor; output: string; absorbed: NodeProto[] } | null> {
    const [a, b] = inputs;
    if (!a || !b || a.dims.length < 2 || b.dims.length < 2) return null;
    const plan = gemmPlan(a.dims, b.dims, this.variant, this.ctx.capabilities.limits, this.tiling);
    const n = b.dims[b.dims.length - 1];
    if (plan.kind !== "tuned" || fusion.bias.dims.length !== 1 || fusion.bias.dims[0] !== n)
      return null;
    const batch = broadcastShapes(a.dims.slice(0, -2), b.dims.slice(0, -2), "MatMul");
    const dims = [...batch, a.dims[a.dims.length - 2], n];
    const g = fusion.geglu;
    const geglu =
      g !== undefined &&
      n % 2 === 0 &&
      g.sizes.length === 2 &&
      g.sizes.every((size) => size === n / 2) &&
      (g.axis === -1 || g.axis === dims.length - 1);
    const gelu = fusion.gelu;
    // Found only where no GELU or GEGLU follows (fusions.ts).
    const channelsFirst = await this.channelsFirstResidual(fusion, a.dims, n, plan.shape, scope);
    if (channelsFirst) {
      const { map, planeSize, nodes } = channelsFirst;
      const out = this.allocate(map.dims);
      const bias = this.toDevice(fusion.bias);
      await this.gemm(
        plan.shape,
        this.toDevice(a),
        this.toDevice(b),
        out,
        bias,
        "none",
        map,
        planeSize,
      );
      return {
        value: out,
        output: nodes.add.output[0],
        absorbed: [fusion.add, nodes.transpose, nodes.reshape, nodes.add],
      };
    }
    // The residual: a float value of exactly the product's shape (no broadcasting).
    const r = fusion.residual;
    const added = r ? scope.get(r.input) : undefined;
    const residual =
      added && (added.kind === "device" || added.dtype === "float32") && sameShape(added.dims, dims)
        ? this.toDevice(added)
        : undefined;
    const out = this.allocate(geglu ? [...dims.slice(0, -1), n / 2] : dims);
    await this.gemm(
      geglu ? { ...plan.shape, n: n / 2 } : plan.shape,
      this.toDevice(a),
      this.toDevice(b),
      out,
      this.toDevice(fusion.bias),
      geglu ? "geglu" : gelu ? "gelu" : "none",
      residual,
    );
    if (geglu && g) return { value: out, output: g.output, absorbed: [fusion.add, ...g.nodes] };
    if (gelu) return { value: out, output: gelu.output, absorbed: [fusion.add, ...gelu.nodes] };
    if (r && residual)
      return { value: out, output: r.add.output[0], absorbed: [fusion.add, r.add] };
    return { value: out, output: fusion.add.output[0], absorbed: [fusion.add] };
  }

  /**
   * The map a Linear's tokens go back into (ChannelsFirstResidual), where the shapes are the
   * pattern's: tokens (B, N, K) multiplied unbatched, a float map x of (B, n, ...) with N
   * positions, and the Reshape of the transposed (B, n, N) product giving exactly x's dims. Null
   * otherwise (the nodes then run one by one).
   */
  private async channelsFirstResidual(
    fusion: LinearFusion,
    tokens: readonly number[],
    n: number,
    shape: GemmShape,
    scope: Scope,
  ): Promise<{
    map: DeviceTensor;
    planeSize: number;
    nodes: NonNullable<LinearFusion["channelsFirst"]>;
  } | null> {
    const nodes = fusion.channelsFirst;
    if (!nodes || tokens.length !== 3 || shape.batch !== 1) return null;
    const [images, positions] = tokens;
    const map = scope.get(nodes.input);
    const target = nodes.reshape.input[1];
    const shapeValue = target === undefined ? undefined : scope.get(target);
    if (!map || !shapeValue || (map.kind !== "device" && map.dtype !== "float32")) return null;
    if (map.dims.length < 3 || map.dims[0] !== images || map.dims[1] !== n) return null;
    if (sizeOf(map.dims.slice(2)) !== positions) return null;
    const allowZero = attributesOf(nodes.reshape).int("allowzero", 0) === 1;
    this.capture?.decides(shapeValue);
    const dims = reshapeDims(
      [images, n, positions],
      ints(await this.toHost(shapeValue)),
      allowZero,
    );
    if (!sameShape(dims, map.dims)) return null;
    return { map: this.toDevice(map), planeSize: positions, nodes };
  }

  /**
   * A group norm from its InstanceNormalization on (fusions.ts): statistics, the per-channel
   * scale and shift and SiLU in one kernel over NCHW data, in place of the InstanceNormalization,
   * Mul, Add, Sigmoid and Mul launches and their intermediate tensors. Null where the shapes are
   * not the pattern's (then the nodes run one by one).
   */
  private async fusedGroupNorm(
    inputs: (Value | undefined)[],
    fusion: GroupNormFusion,
    scope: Scope,
  ): Promise<{ value: DeviceTensor; output: string; absorbed: readonly NodeProto[] } | null> {
    const grouped = inputs[0];
    if (grouped?.dims.length !== 3) return null;
    const [batch, groups, length] = grouped.dims;
    const source = "of" in fusion.shape ? scope.get(fusion.shape.of) : undefined;
    const target =
      "initializer" in fusion.shape
        ? reshapeDims(grouped.dims, ints(fusion.shape.initializer), false)
        : source?.dims;
    if (!target || target.length < 3 || target[0] !== batch) return null;
    const channels = target[1];
    const pixels = sizeOf(target.slice(2));
    if (
      sizeOf(target) !== sizeOf(grouped.dims) ||
      channels % groups !== 0 ||
      pixels * (channels / groups) !== length ||
      fusion.gamma.data.length !== channels ||
      fusion.beta.data.length !== channels
    )
      return null;
    const x = this.toDevice(grouped);
    // Channels-last goes a tile of whole pixels at a time: a group of more channels stays NCHW.
    const reader =
      channels / groups <= GROUP_NORM_TILE
        ? this.channelsLastReader(fusion, target, batch, channels, pixels, scope)
        : undefined;
    const out = this.allocate(reader?.dims ?? target);
    const channelsLast = reader !== undefined;
    const rows = batch * groups;
    const label = fusion.silu ? "group norm silu" : "group norm";
    const gamma = this.toDevice(fusion.gamma).buffer;
    const beta = this.toDevice(fusion.beta).buffer;
    const eps = f32Bits(fusion.epsilon);
    const { chunks, chunkLength } = groupNormChunks(length);
    if (chunks === 1 || rows > this.ctx.capabilities.limits.maxComputeWorkgroupsPerDimension) {
      await this.launch(
        label,
        groupNormKernel(fusion.silu, this.storage, channelsLast),
        [x.buffer, gamma, beta, out.buffer, this.paramBuffer([rows, length, pixels, groups, eps])],
        rows,
        rowGrid(rows),
      );
    } else {
      // Long rows (a group of a large map): statistics per chunk, then each chunk normalised
      // after merging its row's statistics, so every chunk of every row is a workgroup.
      const part = this.ctx.allocate([rows * chunks * 2], "f32", "group norm partials");
      await this.launch(
        `${label} partials`,
        groupNormPartialsKernel(this.storage),
        [x.buffer, part.buffer, this.paramBuffer([rows, length, chunks, chunkLength])],
        rows * chunks,
        [chunks, rows, 1],
      );
      await this.launch(
        label,
        groupNormApplyKernel(fusion.silu, this.storage, channelsLast),
        [
          x.buffer,
          gamma,
          beta,
          part.buffer,
          out.buffer,
          this.paramBuffer([rows, length, pixels, groups, eps, chunks, chunkLength]),
        ],
        rows * chunks,
        [chunks, rows, 1],
      );
      this.ctx.release(part);
    }
    if (!reader) return { value: out, output: fusion.output, absorbed: fusion.nodes };
    return reader.tokens
      ? {
          value: out,
          output: reader.tokens.output,
          absorbed: [...fusion.nodes, ...reader.tokens.nodes],
        }
      : { value: { ...out, channelsLast: true }, output: fusion.output, absorbed: fusion.nodes };
  }

  /**
   * Where a group norm writes its result channels-last (fusions.ts): for a transformer's tokens
   * when the Reshape makes (B, C, H W) of it (the kernel then writes the Transpose's (B, H W, C)),
   * or for a Conv the tuned kernel runs without padding of its own (the kernel then writes the
   * NHWC input the convolution reads, in place of an NCHW result and a transposing copy).
   * Undefined: the result stays NCHW.
   */
  private channelsLastReader(
    fusion: GroupNormFusion,
    target: readonly number[],
    batch: number,
    channels: number,
    pixels: number,
    scope: Scope,
  ):
    | { dims: readonly number[]; tokens?: { output: string; nodes: readonly NodeProto[] } }
    | undefined {
    const reader = fusion.channelsLastReader;
    if (!reader) return undefined;
    if (reader.kind === "tokens") {
      const reshaped = reshapeDims(target, ints(reader.shape), false);
      return sameShape(reshaped, [batch, channels, pixels])
        ? { dims: [batch, pixels, channels], tokens: reader }
        : undefined;
    }
    if (target.length !== 4) return undefined;
    const conv = reader.conv;
    const tuned = this.tunedConvPlan(target, scope.get(conv.input[1]), attributesOf(conv));
    return tuned && !tuned.plan.inputPads ? { dims: target } : undefined;
  }

  /**
   * A Conv weight initializer on the GPU in the tuned kernel's layout, made once: uploaded in
   * ONNX's layout and re-laid there by a strided copy submitted on its own (not recorded into the
   * call, so a replayed call never repeats it), instead of re-laid value by value on the host,
   * which cost an SD 1.5 UNet's first call seconds of JavaScript for its 0.5 billion conv weights
   * (BENCHMARKS.md).
   */
  private async convWeightsOnDevice(w: HostTensor): Promise<DeviceTensor> {
    const made = this.convWeights.get(w);
    if (made) return made;
    const [o, c, kh, kw] = w.dims;
    const dims = [kh, kw, c, o];
    const pipeline = await this.ctx.pipeline({
      label: "engine copy",
      code: copyKernel(this.storage, false),
    });
    const raw = this.uploadOwned(w, "engine conv weight, ONNX layout");
    this.owned.delete(raw.buffer);
    const count = sizeOf(dims);
    const buffer = this.ctx.device.createBuffer({
      size: Math.max(16, Math.ceil((count * bytesPerElement(this.storage)) / 16) * 16),
      usage: BUFFER_USAGE.storage,
      label: "engine conv weight",
    });
    const params = copyParams(dims, 0, convWeightSourceStrides(w.dims), 0, stridesOf(dims));
    this.ctx.dispatch([
      {
        pipeline,
        buffers: [raw.buffer, buffer, this.paramBuffer(params)],
        workgroups: grid(count),
      },
    ]);
    // Freed once the copy submitted above has run.
    raw.buffer.destroy();
    const t: DeviceTensor = { kind: "device", buffer, dims };
    this.convWeights.set(w, t);
    return t;
  }

  /** a (..., M, K) x b (..., K, N) on the tuned GEMM where it takes the shapes, else portable. */
  private async matmul(a: DeviceTensor, b: DeviceTensor, op = "MatMul"): Promise<DeviceTensor> {
    const [M, K] = a.dims.slice(-2);
    const [K2, N] = b.dims.slice(-2);
    if (K !== K2) throw new Error(`${op}: inner sizes ${K} and ${K2} differ`);
    const batch = broadcastShapes(a.dims.slice(0, -2), b.dims.slice(0, -2), op);
    const dims = [...batch, M, N];
    const out = this.allocate(dims);
    const plan = gemmPlan(a.dims, b.dims, this.variant, this.ctx.capabilities.limits, this.tiling);
    if (plan.kind === "tuned") {
      await this.gemm(plan.shape, a, b, out);
      return out;
    }
    const n = sizeOf(dims);
    const aS = broadcastStrides(a.dims.slice(0, -2), batch).map((s) => s * M * K);
    const bS = broadcastStrides(b.dims.slice(0, -2), batch).map((s) => s * K * N);
    const p = [n, M, N, K, batch.length, ...padded(batch), ...padded(aS), ...padded(bS)];
    await this.launch(
      "matmul",
      matmulKernel(this.storage),
      [a.buffer, b.buffer, out.buffer, this.paramBuffer(p)],
      n,
    );
    return out;
  }

  /** softmax(scale x) over the last axis, one workgroup per row. */
  private async softmax(x: DeviceTensor, scale: number): Promise<DeviceTensor> {
    const length = x.dims.at(-1) ?? 1;
    const rows = sizeOf(x.dims) / Math.max(length, 1);
    const out = this.allocate(x.dims);
    const params = this.paramBuffer([rows, length, f32Bits(scale)]);
    await this.launch(
      "softmax",
      softmaxKernel(this.storage),
      [x.buffer, out.buffer, params],
      rows,
      rowGrid(rows),
    );
    return out;
  }

  /**
   * Attention over heads too wide for the flash kernels (the VAE's single head of 512, beyond
   * the tuned kernel's workgroup memory and the portable kernel's registers), as the textbook
   * three steps: scores S = (scale Q) K^T on the GEMM, softmax(S) row by row, then S V on the
   * GEMM (Q is scaled as it is copied, so f16 scores keep the range the softmax sees). The scores are written out, so the queries go in blocks whose scores stay within
   * `attentionScoreBytes` (a 1024 px VAE's 16384 x 16384 scores are 512 MB in f16): each block's
   * queries are copied out per head, and its result copied into place. K is transposed per head
   * once a call; V is too where there are several heads.
   */
  private async scoredAttention(
    q: DeviceTensor,
    k: DeviceTensor,
    v: DeviceTensor,
    heads: number,
    scale: number,
  ): Promise<DeviceTensor> {
    const [B, Sq, width] = q.dims;
    const Sk = k.dims[1];
    const D = width / heads;
    const Dv = v.dims[2] / heads;
    const kt = this.allocate([B, heads, D, Sk]);
    await this.copy(k, 0, [Sk * width, D, 1, width], kt, 0, stridesOf(kt.dims), kt.dims);
    // One head's V is already (B, 1, Sk, Dv): the same buffer, seen with the head axis.
    let vh: DeviceTensor = { ...v, dims: [B, 1, Sk, Dv] };
    if (heads > 1) {
      vh = this.allocate([B, heads, Sk, Dv]);
      const vs = [Sk * heads * Dv, Dv, heads * Dv, 1];
      await this.copy(v, 0, vs, vh, 0, stridesOf(vh.dims), vh.dims);
    }
    const { limits } = this.ctx.capabilities;
    const budget =
      this.options.attentionScoreBytes ??
      Math.min(DEFAULT_SCORE_BYTES, limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    const rowBytes = B * heads * Sk * bytesPerElement(this.storage);
    let block = Math.max(1, Math.floor(budget / rowBytes));
    if (block >= 64) block -= block % 64; // whole GEMM tiles
    block = Math.min(block, Sq);
    const out = this.allocate([B, Sq, heads * Dv]);
    const outStrides = [Sq * heads * Dv, Dv, heads * Dv, 1];
    for (let start = 0; start < Sq; start += block) {
      const rows = Math.min(block, Sq - start);
      const qb = this.allocate([B, heads, rows, D]);
      await this.copy(
        q,
        start * width,
        [Sq * width, D, width, 1],
        qb,
        0,
        stridesOf(qb.dims),
        qb.dims,
        scale,
      );
      const scores = await this.matmul(qb, kt);
      this.releaseTemporary(qb);
      const probabilities = await this.softmax(scores, 1);
      this.releaseTemporary(scores);
      const ob = await this.matmul(probabilities, vh);
      this.releaseTemporary(probabilities);
      await this.copy(ob, 0, stridesOf(ob.dims), out, start * heads * Dv, outStrides, ob.dims);
      this.releaseTemporary(ob);
    }
    this.releaseTemporary(kt);
    if (heads > 1) this.releaseTemporary(vh);
    return out;
  }

  /** A strided copy (see copyKernel), each value multiplied by `scale` where one is given. */
  private async copy(
    src: DeviceTensor,
    srcOffset: number,
    srcStrides: readonly number[],
    dst: DeviceTensor,
    dstOffset: number,
    dstStrides: readonly number[],
    shape: readonly number[],
    scale?: number,
  ): Promise<void> {
    const count = sizeOf(shape);
    const p = copyParams(shape, srcOffset, srcStrides, dstOffset, dstStrides);
    if (scale !== undefined) p.push(f32Bits(scale));
    await this.launch(
      "copy",
      copyKernel(this.storage, scale !== undefined),
      [src.buffer, dst.buffer, this.paramBuffer(p)],
      count,
    );
  }

  /** (B, N, H d) K or V copied into (B, H, N, d), each head's tokens side by side. */
  private async byHead(x: DeviceTensor, heads: number): Promise<DeviceTensor> {
    const [B, N, width] = x.dims;
    const d = width / heads;
    const out = this.allocate([B, heads, N, d]);
    await this.copy(x, 0, [N * width, d, width, 1], out, 0, stridesOf(out.dims), out.dims);
    return out;
  }

  /** The GPU implementation of `node`, or null when it has none (host fallback). */
  private async deviceOp(
    node: NodeProto,
    inputs: (Value | undefined)[],
    attrs: Attributes,
  ): Promise<Value[] | null> {
    const op = node.opType;
    const host = async (i: number) => {
      this.capture?.decides(inputs[i]);
      return this.toHost(inputs[i] as Value);
    };
    const dev = (i: number) => this.toDevice(inputs[i] as Value);
    if (VIEWS.has(op) || (op === "Cast" && [1, 10, 11].includes(attrs.int("to", 1)))) {
      const x = dev(0);
      let dims: number[];
      if (op === "Reshape")
        dims = reshapeDims(x.dims, ints(await host(1)), attrs.int("allowzero", 0) === 1);
      else if (op === "Unsqueeze") dims = unsqueezeDims(x.dims, ints(await host(1)));
      else if (op === "Squeeze") dims = squeezeDims(x.dims, inputs[1] ? ints(await host(1)) : []);
      else if (op === "Flatten") {
        const axis = normalizeAxis(attrs.int("axis", 1), x.dims.length + 1);
        dims = [sizeOf(x.dims.slice(0, axis)), sizeOf(x.dims.slice(axis))];
      } else dims = [...x.dims];
      return [{ kind: "device", buffer: x.buffer, dims }];
    }
    if (UNARY_EXPRESSIONS[op] || op === "Clip") {
      const x = dev(0);
      const out = this.allocate(x.dims);
      const extra =
        op === "Clip"
          ? [
              f32Bits(inputs[1] ? (await host(1)).data[0] : -3.4028234e38),
              f32Bits(inputs[2] ? (await host(2)).data[0] : 3.4028234e38),
            ]
          : [];
      const n = sizeOf(x.dims);
      await this.launch(
        op,
        unaryKernel(op, this.storage),
        [x.buffer, out.buffer, this.paramBuffer([n, ...extra])],
        n,
      );
      return [out];
    }
    if (BINARY_EXPRESSIONS[op]) {
      const a = dev(0);
      const b = dev(1);
      const dims = broadcastShapes(a.dims, b.dims, op);
      const out = this.allocate(dims);
      const n = sizeOf(dims);
      const p = [
        n,
        dims.length,
        ...padded(dims),
        ...padded(broadcastStrides(a.dims, dims)),
        ...padded(broadcastStrides(b.dims, dims)),
      ];
      await this.launch(
        op,
        binaryKernel(op, this.storage),
        [a.buffer, b.buffer, out.buffer, this.paramBuffer(p)],
        n,
      );
      return [out];
    }
    switch (op) {
      case "Transpose": {
        const x = dev(0);
        const perm = attrs.ints("perm") ?? x.dims.map((_, i) => x.dims.length - 1 - i);
        const dims = perm.map((p) => x.dims[p]);
        const out = this.allocate(dims);
        const s = stridesOf(x.dims);
        await this.copy(
          x,
          0,
          perm.map((p) => s[p]),
          out,
          0,
          stridesOf(dims),
          dims,
        );
        return [out];
      }
      case "Slice": {
        const x = dev(0);
        const r = resolveSlice(
          x.dims,
          ints(await host(1)),
          ints(await host(2)),
          inputs[3] ? ints(await host(3)) : [],
          inputs[4] ? ints(await host(4)) : [],
        );
        const s = stridesOf(x.dims);
        const out = this.allocate(r.count);
        const offset = r.start.reduce((a, v, d) => a + v * s[d], 0);
        await this.copy(
          x,
          offset,
          s.map((v, d) => v * r.step[d]),
          out,
          0,
          stridesOf(r.count),
          r.count,
        );
        return [out];
      }
      case "Split": {
        const x = dev(0);
        const axis = normalizeAxis(attrs.int("axis", 0), x.dims.length);
        const total = x.dims[axis];
        const count = node.output.length;
        const sizes = inputs[1]
          ? ints(await host(1))
          : new Array<number>(count).fill(Math.ceil(total / count));
        const s = stridesOf(x.dims);
        const outs: Value[] = [];
        let offset = 0;
        for (let i = 0; i < count; i++) {
          const length = i === count - 1 ? total - offset : sizes[i];
          const dims = x.dims.map((d, j) => (j === axis ? length : d));
          const out = this.allocate(dims);
          await this.copy(x, offset * s[axis], s, out, 0, stridesOf(dims), dims);
          outs.push(out);
          offset += length;
        }
        return outs;
      }
      case "Concat": {
        const parts = inputs.map((v) => this.toDevice(v as Value));
        const axis = normalizeAxis(attrs.int("axis", 0), parts[0].dims.length);
        const dims = [...parts[0].dims];
        dims[axis] = parts.reduce((a, t) => a + t.dims[axis], 0);
        const out = this.allocate(dims);
        if (parts.length === 2) {
          const [first, second] = parts;
          const count = sizeOf(dims);
          const p = [
            count,
            dims.length,
            axis,
            first.dims[axis],
            ...padded(dims),
            ...padded(stridesOf(first.dims)),
            ...padded(stridesOf(second.dims)),
          ];
          await this.launch(
            "concat",
            concatPairKernel(this.storage),
            [first.buffer, second.buffer, out.buffer, this.paramBuffer(p)],
            count,
          );
          return [out];
        }
        const s = stridesOf(dims);
        let offset = 0;
        for (const t of parts) {
          await this.copy(t, 0, stridesOf(t.dims), out, offset * s[axis], s, t.dims);
          offset += t.dims[axis];
        }
        return [out];
      }
      case "Pad": {
        const mode = attrs.string("mode", "constant");
        if (mode !== "constant") throw unsupported(`Pad in ${mode} mode`);
        if (inputs[3]) throw unsupported("Pad over chosen axes");
        const x = dev(0);
        const pads = ints(await host(1));
        const rank = x.dims.length;
        if (pads.length !== 2 * rank || pads.some((v) => v < 0))
          throw unsupported(`Pad with pads [${pads.join(", ")}] (negative or not 2 x rank)`);
        const value = inputs[2] ? (await host(2)).data[0] : 0;
        const dims = x.dims.map((d, i) => d + pads[i] + pads[i + rank]);
        const out = this.allocate(dims);
        const n = sizeOf(dims);
        await this.launch(
          "fill",
          fillKernel(this.storage),
          [out.buffer, this.paramBuffer([n, f32Bits(value)])],
          n,
        );
        const s = stridesOf(dims);
        const offset = pads.slice(0, rank).reduce((a, v, d) => a + v * s[d], 0);
        await this.copy(x, 0, stridesOf(x.dims), out, offset, s, x.dims);
        return [out];
      }
      case "Expand": {
        const x = dev(0);
        const dims = broadcastShapes(x.dims, ints(await host(1)), op);
        const out = this.allocate(dims);
        await this.copy(x, 0, broadcastStrides(x.dims, dims), out, 0, stridesOf(dims), dims);
        return [out];
      }
      case "Gather": {
        if (inputs[1]?.kind !== "host") return null;
        this.capture?.decides(inputs[1]);
        const x = dev(0);
        const indices = inputs[1];
        const axis = normalizeAxis(attrs.int("axis", 0), x.dims.length);
        const length = x.dims[axis];
        const inner = sizeOf(x.dims.slice(axis + 1));
        const dims = [...x.dims.slice(0, axis), ...indices.dims, ...x.dims.slice(axis + 1)];
        const out = this.allocate(dims);
        const n = sizeOf(dims);
        const idx = this.indexBuffer(Array.from(indices.data, (j) => (j < 0 ? j + length : j)));
        await this.launch(
          "gather",
          gatherKernel(this.storage),
          [x.buffer, idx, out.buffer, this.paramBuffer([n, length, indices.data.length, inner])],
          n,
        );
        return [out];
      }
      case "Resize": {
        const mode = attrs.string("mode", "nearest");
        const transform = attrs.string("coordinate_transformation_mode", "half_pixel");
        const rounding = attrs.string("nearest_mode", "round_prefer_floor");
        if (mode !== "nearest" || transform !== "asymmetric" || rounding !== "floor")
          throw unsupported(
            `Resize with mode ${mode}, ${transform} coordinates and ${rounding} rounding`,
          );
        const x = dev(0);
        let scales = inputs[2] ? Array.from((await host(2)).data) : [];
        let dims: number[];
        if (scales.length > 0) dims = x.dims.map((d, i) => Math.floor(d * scales[i]));
        else {
          dims = ints(await host(3));
          scales = dims.map((d, i) => d / x.dims[i]);
        }
        const out = this.allocate(dims);
        const n = sizeOf(dims);
        const p = [
          n,
          dims.length,
          ...padded(dims),
          ...padded(x.dims),
          ...padded(scales.map(f32Bits)),
        ];
        await this.launch(
          "resize",
          resizeNearestKernel(this.storage),
          [x.buffer, out.buffer, this.paramBuffer(p)],
          n,
        );
        return [out];
      }
      case "ReduceMean":
      case "ReduceMax":
      case "ReduceSum": {
        const x = dev(0);
        const axes = attrs.ints("axes") ?? (inputs[1] ? ints(await host(1)) : []);
        if (axes.length !== 1) return null;
        const axis = normalizeAxis(axes[0], x.dims.length);
        const keep = attrs.int("keepdims", 1) === 1;
        const dims = keep
          ? x.dims.map((d, i) => (i === axis ? 1 : d))
          : x.dims.filter((_, i) => i !== axis);
        const out = this.allocate(dims);
        const n = sizeOf(dims);
        const p = [n, x.dims[axis], sizeOf(x.dims.slice(axis + 1))];
        await this.launch(
          op,
          reduceKernel(op as ReduceKind, this.storage),
          [x.buffer, out.buffer, this.paramBuffer(p)],
          n,
        );
        return [out];
      }
      case "MatMul": {
        const a = dev(0);
        const b = dev(1);
        if (a.dims.length < 2 || b.dims.length < 2) throw unsupported("MatMul with a 1-D operand");
        return [await this.matmul(a, b, op)];
      }
      case "Conv": {
        const x = dev(0);
        const w = dev(1);
        if (x.dims.length !== 4) throw unsupported(`Conv over rank ${x.dims.length}`);
        if (attrs.int("group", 1) !== 1) throw unsupported("grouped Conv");
        if (attrs.string("auto_pad", "NOTSET") !== "NOTSET")
          throw unsupported("Conv with auto_pad");
        const [N, C, H, W] = x.dims;
        const [O, , KH, KW] = w.dims;
        const [sy, sx] = attrs.ints("strides") ?? [1, 1];
        const [dy, dx] = attrs.ints("dilations") ?? [1, 1];
        const [pt, pl, pb, pr] = attrs.ints("pads") ?? [0, 0, 0, 0];
        const tuned = this.tunedConvPlan(x.dims, inputs[1], attrs);
        if (tuned)
          return [
            await this.tunedConv(tuned.plan, x, tuned.weights, inputs[2] ? dev(2) : undefined),
          ];
        if (x.channelsLast) throw new Error("a channels-last input reached the portable Conv");
        const OH = Math.floor((H + pt + pb - dy * (KH - 1) - 1) / sy) + 1;
        const OW = Math.floor((W + pl + pr - dx * (KW - 1) - 1) / sx) + 1;
        const out = this.allocate([N, O, OH, OW]);
        const n = N * O * OH * OW;
        const p = [n, C, H, W, O, OH, OW, KH, KW, sy, sx, pt, pl, dy, dx];
        const buffers = [x.buffer, w.buffer, out.buffer, this.paramBuffer(p)];
        if (inputs[2]) buffers.push(dev(2).buffer);
        await this.launch("conv", convKernel(inputs[2] !== undefined, this.storage), buffers, n);
        return [out];
      }
      case "InstanceNormalization":
      case "LayerNormalization": {
        const x = dev(0);
        if (op === "LayerNormalization") {
          const plan = layerNormPlan(
            {
              x: x.dims,
              axis: normalizeAxis(attrs.int("axis", -1), x.dims.length),
              scale: (inputs[1] as Value).dims,
              bias: inputs[2]?.dims,
              epsilon: attrs.float("epsilon", 1e-5),
              statistics: node.output.filter((o) => o !== "").length > 1,
            },
            this.ctx.capabilities.limits,
          );
          if (plan.kind === "tuned") {
            const kernel = await this.ready(
              this.layerNorms.get(JSON.stringify(plan.shape), () =>
                prepareLayerNorm(this.ctx, this.variant, plan.shape),
              ),
            );
            const out = this.allocate(x.dims);
            if (kernel)
              this.record(
                "tuned layernorm",
                kernel.launch([x.buffer, dev(1).buffer, dev(2).buffer, out.buffer]),
              );
            return [out];
          }
        }
        const instance = op === "InstanceNormalization";
        if (!instance && normalizeAxis(attrs.int("axis", -1), x.dims.length) !== x.dims.length - 1)
          throw unsupported("LayerNormalization over more than the last axis");
        if (node.output.filter((o) => o !== "").length > 1)
          throw unsupported(`${op} with its statistics outputs`);
        const length = instance ? sizeOf(x.dims.slice(2)) : (x.dims.at(-1) ?? 1);
        const rows = sizeOf(x.dims) / Math.max(length, 1);
        const out = this.allocate(x.dims);
        const p = [
          rows,
          length,
          1,
          instance ? x.dims[1] : 1,
          f32Bits(attrs.float("epsilon", 1e-5)),
        ];
        const buffers = [x.buffer, dev(1).buffer, out.buffer, this.paramBuffer(p)];
        if (inputs[2]) buffers.push(dev(2).buffer);
        await this.launch(
          op,
          normKernel(instance ? "instance" : "layer", inputs[2] !== undefined, this.storage),
          buffers,
          rows,
          rowGrid(rows),
        );
        return [out];
      }
      case "Softmax": {
        const x = dev(0);
        if (normalizeAxis(attrs.int("axis", -1), x.dims.length) !== x.dims.length - 1)
          throw unsupported("Softmax over an axis other than the last");
        return [await this.softmax(x, 1)];
      }
      case "MultiHeadAttention": {
        if (inputs[3] || inputs[4] || inputs.length > 6)
          throw unsupported(
            "MultiHeadAttention with a packed bias, a key padding mask or past state",
          );
        const q = dev(0);
        const k = dev(1);
        const v = dev(2);
        if (q.dims.length !== 3 || k.dims.length !== 3 || v.dims.length !== 3)
          throw unsupported("MultiHeadAttention with packed or 4-D inputs");
        const heads = attrs.int("num_heads", 1);
        const givenScale = attrs.float("scale", Number.NaN);
        const plan = attentionPlan(
          {
            q: q.dims,
            k: k.dims,
            v: v.dims,
            heads,
            scale: Number.isNaN(givenScale) ? undefined : givenScale,
            extraInputs: inputs.slice(3).some((input) => input !== undefined),
          },
          this.variant,
          this.ctx.capabilities.limits,
        );
        if (plan.kind === "tuned") {
          const from = this.options.kvByHeadFrom;
          const shape: AttentionShape =
            from !== undefined && plan.shape.kvTokens >= from
              ? { ...plan.shape, kvByHead: true }
              : plan.shape;
          const kernel = await this.ready(
            this.attentions.get(JSON.stringify(shape), () =>
              prepareAttention(this.ctx, this.variant, shape),
            ),
          );
          const [kb, vb] = shape.kvByHead
            ? [await this.byHead(k, heads), await this.byHead(v, heads)]
            : [k, v];
          const out = this.allocate(q.dims);
          if (kernel)
            this.record(
              "tuned attention",
              kernel.launch([q.buffer, kb.buffer, vb.buffer, out.buffer]),
              kernel.label,
            );
          if (shape.kvByHead) for (const t of [kb, vb]) this.releaseTemporary(t);
          return [out];
        }
        const [B, Sq, HD] = q.dims;
        const Sk = k.dims[1];
        const D = HD / heads;
        const Dv = v.dims[2] / heads;
        const scale = attrs.float("scale", 1 / Math.sqrt(D));
        if (Dv > MAX_HEAD) {
          if (inputs[5]) throw unsupported(`attention heads of width ${Dv} with an attention bias`);
          return [await this.scoredAttention(q, k, v, heads, scale)];
        }
        const out = this.allocate([B, Sq, heads * Dv]);
        const n = B * heads * Sq;
        const buffers = [q.buffer, k.buffer, v.buffer, out.buffer];
        let biasStrides = [0, 0];
        if (inputs[5]) {
          const bias = dev(5);
          const full = [B, heads, Sq, Sk];
          const padded4 = [...new Array<number>(4 - bias.dims.length).fill(1), ...bias.dims];
          biasStrides = broadcastStrides(padded4, full).slice(0, 2);
        }
        buffers.push(
          this.paramBuffer([n, B, heads, Sq, Sk, D, Dv, f32Bits(scale), ...biasStrides]),
        );
        if (inputs[5]) buffers.push(dev(5).buffer);
        await this.launch(
          "attention",
          attentionKernel(inputs[5] !== undefined, this.storage),
          buffers,
          n,
        );
        return [out];
      }
      default:
        return null;
    }
  }
}

/** Every standard operator the engine executes (on the GPU or on the host). */
export const SUPPORTED: ReadonlySet<string> = new Set([
  ...Object.keys(UNARY_EXPRESSIONS),
  ...Object.keys(BINARY_EXPRESSIONS),
  ...VIEWS,
  ...DEVICE_ONLY,
  "If",
  "Shape",
  "Constant",
  "ConstantOfShape",
  "Concat",
  "Gather",
  "GatherND",
  "Pad",
  "GatherElements",
  "Slice",
  "Split",
  "Expand",
  "Range",
  "Transpose",
  "TopK",
  "ArgMax",
  "ReduceSum",
  "ReduceMean",
  "ReduceMax",
  "ReduceL2",
  "ScatterElements",
  "ScatterND",
  "Where",
  "Mod",
  "Equal",
  "Greater",
  "GreaterOrEqual",
  "Less",
  "LessOrEqual",
  "And",
  "Or",
  "Not",
  "Ceil",
]);
