/**
 * Summaries of onnxruntime's profiling output (a Chrome-trace JSON array): time per operator
 * type and the execution provider each node ran on, so a benchmark can say where the time goes
 * and whether any node fell back to the CPU.
 */
import { readFileSync } from "node:fs";

interface TraceEvent {
  readonly cat?: string;
  readonly name?: string;
  readonly dur?: number;
  readonly args?: { readonly op_name?: string; readonly provider?: string };
}

export interface OpTypeTime {
  readonly opType: string;
  readonly totalMs: number;
  readonly count: number;
  readonly providers: readonly string[];
}

export interface ProfileSummary {
  /** Sum of node kernel times per run, averaged over the profiled runs. */
  readonly byOpType: readonly OpTypeTime[];
  /** Node count per execution provider (one run). */
  readonly placement: Readonly<Record<string, number>>;
  readonly runs: number;
}

export function summariseProfile(path: string): ProfileSummary {
  const events = JSON.parse(readFileSync(path, "utf8")) as TraceEvent[];
  const runs = Math.max(
    1,
    events.filter((e) => e.cat === "Session" && e.name === "model_run").length,
  );
  const byOp = new Map<string, { total: number; count: number; providers: Set<string> }>();
  const nodeProviders = new Map<string, string>();
  for (const event of events) {
    if (event.cat !== "Node" || !event.name?.endsWith("_kernel_time")) continue;
    const opType = event.args?.op_name ?? "?";
    const provider = event.args?.provider ?? "?";
    const entry = byOp.get(opType) ?? { total: 0, count: 0, providers: new Set<string>() };
    entry.total += (event.dur ?? 0) / 1000;
    entry.count += 1;
    entry.providers.add(provider);
    byOp.set(opType, entry);
    nodeProviders.set(event.name, provider);
  }
  const placement: Record<string, number> = {};
  for (const provider of nodeProviders.values())
    placement[provider] = (placement[provider] ?? 0) + 1;
  const byOpType = [...byOp.entries()]
    .map(([opType, e]) => ({
      opType,
      totalMs: e.total / runs,
      count: Math.round(e.count / runs),
      providers: [...e.providers].sort(),
    }))
    .sort((a, b) => b.totalMs - a.totalMs);
  return { byOpType, placement, runs };
}
