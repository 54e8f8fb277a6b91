/**
 * Observability: GET /health (the queue answers, workers take jobs) and GET /metrics in the
 * Prometheus text format (queue depth, jobs by state, job and UNet seconds per worker).
 */
import { allowMethods, sendJson, sendText } from "../http.js";
import type { MetricsReport } from "../job-backend.js";
import type { RouteModule, ServerContext } from "./context.js";

export function opsRoutes(server: ServerContext): RouteModule {
  return {
    matches: (path) => path === "/health" || path === "/metrics",
    needsKey: () => false,
    async handle({ res, url, method }) {
      allowMethods(method, "GET");
      if (url.pathname === "/health") {
        const health = await server.jobs.health();
        return sendJson(res, health.ok ? 200 : 503, health);
      }
      const report = await server.jobs.metrics();
      return sendText(res, 200, "text/plain; version=0.0.4; charset=utf-8", renderMetrics(report));
    },
  };
}

function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

export function renderMetrics(report: MetricsReport): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string) =>
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  metric("todo_sd_queue_depth", "gauge", "Jobs waiting for a worker.");
  lines.push(`todo_sd_queue_depth ${report.jobs.waiting}`);
  metric("todo_sd_jobs", "gauge", "Jobs by state, as the queue holds them now.");
  for (const [state, count] of Object.entries(report.jobs))
    lines.push(`todo_sd_jobs{state="${state}"} ${count}`);
  metric("todo_sd_worker_jobs_total", "counter", "Jobs finished per worker, by outcome.");
  for (const [worker, t] of report.workers) {
    lines.push(
      `todo_sd_worker_jobs_total{worker="${label(worker)}",outcome="completed"} ${t.completed}`,
    );
    lines.push(`todo_sd_worker_jobs_total{worker="${label(worker)}",outcome="failed"} ${t.failed}`);
  }
  metric("todo_sd_job_seconds_total", "counter", "Seconds spent on completed jobs per worker.");
  for (const [worker, t] of report.workers)
    lines.push(`todo_sd_job_seconds_total{worker="${label(worker)}"} ${t.jobSeconds}`);
  metric("todo_sd_unet_seconds_total", "counter", "Seconds spent in the UNet per worker.");
  for (const [worker, t] of report.workers)
    lines.push(`todo_sd_unet_seconds_total{worker="${label(worker)}"} ${t.unetSeconds}`);
  return `${lines.join("\n")}\n`;
}
