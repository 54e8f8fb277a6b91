/**
 * Record once, replay after. A warm UNet call walks about a thousand graph nodes in JavaScript to
 * record a few hundred kernel launches, and on a fast GPU that walk, not the kernels, can bound a
 * small call (BENCHMARKS.md: an SD 1.5 call at 512 px recorded in 27-33 ms of a 45 ms call). The
 * launches of a call depend only on what the host decided while walking: the feeds' shapes, the
 * options, and the branches its If nodes took. So the executor keeps the tape of a call (its
 * launches with their bind groups, and how each host value it uploaded came about) and replays it
 * for the next call with the same signature: it re-evaluates only the host nodes that depend on
 * the feeds' values (the timestep's embedding, the reduction thresholds' conditions), checks that
 * every If takes the same branch and that every such value a launch was decided by (a shape, a
 * parameter, an index list: the reduction thresholds' choice of factor) is what it was, writes
 * the values uploaded into the tape's own buffers, and records the tape's launches as they are.
 *
 * A call is captured only when replaying it is exact:
 * - no GPU value is read back before the outputs (a host decision on GPU data);
 * - no value derived from the feeds' values runs on the host inside an If branch;
 * - every pooled buffer the tape touches is back in the pool when the call ends, so a replay can
 *   take exactly those buffers again (it falls back to walking the graph when one is held
 *   elsewhere).
 * Device feeds and kept outputs are the caller's buffers: a replay substitutes this call's feeds
 * and fresh pooled buffers for them in the launches that touch them.
 */
import type { KernelLaunch } from "../gpu/context.js";
import type { NodeProto } from "../onnx/proto.js";
import { sameShape } from "../weights/source.js";
import type { HostTensor } from "./host-tensor.js";

/** One launch of the tape and the label its statistics count it under. */
export interface TapeEntry {
  readonly launch: KernelLaunch;
  readonly label: string;
}

/** A host node re-evaluated on replay: its inputs are constants or names of values re-made. */
export interface HostStep {
  readonly node: NodeProto;
  readonly inputs: readonly (HostTensor | string | undefined)[];
  /**
   * Its outputs' shapes in the capture: one that changes with the feeds' values (a shape made
   * from a value) would change what the launches after it do, so a replay must see the same.
   */
  readonly outputDims: readonly (readonly number[])[];
}

/** A value made from the feeds' values, uploaded into a buffer of the plan's own. */
export interface UploadSlot {
  readonly name: string;
  readonly buffer: GPUBuffer;
  readonly dims: readonly number[];
  /** The element type the buffer holds (f32 where a launch converts it into f16 storage). */
  readonly storage: "f32" | "f16";
}

/** How a replay produces one graph output. */
export type PlannedOutput =
  | { readonly kind: "read"; readonly buffer: GPUBuffer; readonly dims: readonly number[] }
  | {
      readonly kind: "keep";
      readonly buffer: GPUBuffer;
      readonly dims: readonly number[];
      readonly bytes: number;
    }
  | { readonly kind: "constant"; readonly value: HostTensor }
  | { readonly kind: "varying"; readonly name: string };

export interface ReplayPlan {
  readonly key: string;
  readonly tape: readonly TapeEntry[];
  /** Tape indices of the launches that touch a substituted buffer (bind groups made per call). */
  readonly dynamic: ReadonlySet<number>;
  readonly steps: readonly HostStep[];
  /** If conditions computed from the feeds' values, and the branch the tape took on each. */
  readonly guards: readonly Guard[];
  readonly uploads: readonly UploadSlot[];
  /** The capture's device feeds by input name (substituted by each call's own). */
  readonly feeds: ReadonlyMap<string, GPUBuffer>;
  /** Pooled buffers the tape reads and writes, taken from the pool for each replay. */
  readonly pooled: readonly GPUBuffer[];
  /** Buffers of the plan's own (its uploads, index lists): destroyed with it. */
  readonly owned: readonly GPUBuffer[];
  readonly outputs: ReadonlyMap<string, PlannedOutput>;
  readonly kernels: Readonly<Record<string, number>>;
}

/**
 * What a replay checks before it applies: an If's branch (the condition's truth), or a value the
 * host decided launches by (its elements, exactly).
 */
export type Guard =
  | { readonly kind: "branch"; readonly name: string; readonly thenBranch: boolean }
  | { readonly kind: "value"; readonly name: string; readonly data: readonly number[] };

/** What a call being captured has shown so far (GraphExecutor fills it while it walks). */
export class Capture {
  readonly tape: TapeEntry[] = [];
  readonly steps: HostStep[] = [];
  readonly guards: Guard[] = [];
  readonly uploads: UploadSlot[] = [];
  readonly feeds = new Map<string, GPUBuffer>();
  /** Host values made from the feeds' values, and the top-level name each goes by. */
  readonly varying = new Map<HostTensor, string | undefined>();
  /** Why the call cannot be replayed, once something has shown it. */
  invalid: string | undefined;
  /** Set once the graph has run: reading the outputs back is allowed. */
  outputsPhase = false;

  constructor(readonly key: string) {}

  invalidate(reason: string): void {
    this.invalid ??= reason;
  }

  isVarying(v: unknown): v is HostTensor {
    return this.varying.has(v as HostTensor);
  }

  /** The name a varying value is re-made under on replay (invalidates where it has none). */
  nameOf(v: HostTensor): string {
    const name = this.varying.get(v);
    if (name === undefined) this.invalidate("a value made from the feeds has no top-level name");
    return name ?? "";
  }

  /**
   * A value the host reads to decide a launch: where it is made from the feeds' values, a replay
   * must find it the same (a value guard), which needs its top-level name.
   */
  decides(v: unknown): void {
    if (!this.isVarying(v)) return;
    const name = this.varying.get(v);
    if (name === undefined)
      this.invalidate("a value made from the feeds inside a subgraph decides a launch");
    else this.guards.push({ kind: "value", name, data: Array.from(v.data) });
  }
}

/** The most plans an executor keeps (one per signature and branch choice, newest first). */
export const MAX_PLANS = 4;

/**
 * The key of everything besides host values that decides a call's launches: each feed's kind,
 * type and shape (and which device feeds share a buffer), the outputs kept on the device, and the
 * options that choose kernels.
 */
export function planKey(
  feeds: ReadonlyMap<
    string,
    | { readonly kind: "host"; readonly dtype: string; readonly dims: readonly number[] }
    | { readonly buffer: GPUBuffer; readonly dims: readonly number[]; readonly storage: string }
  >,
  inputNames: readonly string[],
  keep: ReadonlySet<string>,
  options: unknown,
): string {
  const buffers: GPUBuffer[] = [];
  const parts = inputNames.map((name) => {
    const feed = feeds.get(name);
    if (!feed) return `${name}:-`;
    if (!("buffer" in feed)) return `${name}:host:${feed.dtype}:${feed.dims.join("x")}`;
    // Feeds that share a buffer are another signature than feeds in buffers of their own.
    let same = buffers.indexOf(feed.buffer);
    if (same < 0) same = buffers.push(feed.buffer) - 1;
    return `${name}:device:${feed.storage}:${feed.dims.join("x")}:${same}`;
  });
  return `${parts.join(",")}|keep:${[...keep].sort().join(",")}|${JSON.stringify(options)}`;
}

function sameData(v: HostTensor, guard: { readonly data: readonly number[] }): boolean {
  return v.data.length === guard.data.length && guard.data.every((x, i) => Object.is(x, v.data[i]));
}

/**
 * The host values a replay needs, re-made from this call's host feeds: the plan's steps in
 * order, then its guards checked. Undefined when some If would take another branch than the tape
 * did, or a value a launch was decided by differs (the plan does not apply to this call).
 */
export function replayHostValues(
  plan: ReplayPlan,
  hostFeeds: ReadonlyMap<string, HostTensor>,
  evaluate: (node: NodeProto, inputs: (HostTensor | undefined)[]) => HostTensor[] | null,
): Map<string, HostTensor> | undefined {
  const values = new Map<string, HostTensor>(hostFeeds);
  for (const step of plan.steps) {
    const inputs = step.inputs.map((input) =>
      typeof input === "string" ? values.get(input) : input,
    );
    const out = evaluate(step.node, inputs);
    if (!out || out.length !== step.outputDims.length) return undefined;
    if (out.some((o, i) => !sameShape(o.dims, step.outputDims[i]))) return undefined;
    step.node.output.forEach((name, i) => {
      if (name !== "" && out[i]) values.set(name, out[i]);
    });
  }
  for (const guard of plan.guards) {
    const v = values.get(guard.name);
    if (!v) return undefined;
    if (guard.kind === "branch" ? Boolean(v.data[0]) !== guard.thenBranch : !sameData(v, guard))
      return undefined;
  }
  return values;
}
