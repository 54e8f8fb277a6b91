/**
 * Summaries of onnxruntime's profiling output (a Chrome-trace JSON array): time per operator
 * type and the execution provider each node ran on, so a benchmark can say where the time goes
 * and whether any node fell back to the CPU.
 *
 * Two kinds of event carry times. "Node" events time each kernel's call on the host; for a GPU
 * backend that is only the time to record the work. The WebGPU backend also writes "Api" events
 * from GPU timestamp queries, named `node&OpType&program`: the time the kernel ran on the device.
 * When those are present they are the ones summed.
 */
import { readFileSync } from "node:fs";
import type { ProfileSummary } from "./types.js";

export type { ProfileSummary };

interface TraceEvent {
  readonly cat?: string;
  readonly name?: string;
  readonly dur?: number;
  readonly args?: { readonly op_name?: string; readonly provider?: string };
}

interface Accumulator {
  total: number;
  count: number;
  providers: Set<string>;
}

export function summariseProfile(path: string): ProfileSummary {
  const events = JSON.parse(readFileSync(path, "utf8")) as TraceEvent[];
  const runs = Math.max(
    1,
    events.filter((e) => e.cat === "Session" && e.name === "model_run").length,
  );
  const host = new Map<string, Accumulator>();
  const nodeProviders = new Map<string, string>();
  for (const event of events) {
    if (event.cat !== "Node" || !event.name?.endsWith("_kernel_time")) continue;
    const provider = event.args?.provider ?? "?";
    add(host, event.args?.op_name ?? "?", event.dur ?? 0, provider);
    nodeProviders.set(event.name, provider);
  }
  const device = new Map<string, Accumulator>();
  for (const event of events) {
    if (event.cat !== "Api" || !event.name) continue;
    const [, opType] = event.name.split("&");
    if (opType) add(device, opType, event.dur ?? 0, "");
  }
  // Device events carry no provider; take it from the host events of the same type.
  for (const [opType, entry] of device) {
    entry.providers = new Set(host.get(opType)?.providers ?? ["?"]);
  }
  const placement: Record<string, number> = {};
  for (const provider of nodeProviders.values())
    placement[provider] = (placement[provider] ?? 0) + 1;
  const timeSource = device.size > 0 ? "device" : "host";
  const byOpType = [...(timeSource === "device" ? device : host).entries()]
    .map(([opType, e]) => ({
      opType,
      totalMs: e.total / runs,
      count: Math.round(e.count / runs),
      providers: [...e.providers].sort(),
    }))
    .sort((a, b) => b.totalMs - a.totalMs);
  return { byOpType, timeSource, placement, runs };
}

function add(map: Map<string, Accumulator>, key: string, durUs: number, provider: string): void {
  const entry = map.get(key) ?? { total: 0, count: 0, providers: new Set<string>() };
  entry.total += durUs / 1000;
  entry.count += 1;
  if (provider) entry.providers.add(provider);
  map.set(key, entry);
}
