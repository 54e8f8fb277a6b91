/**
 * The browser entry (package export condition `browser`, and `todo-sd/browser`): the core plus
 * onnxruntime-web runners and a pipeline over a todo-sd server's model files, with the server's
 * job protocol so a page can check requests and report progress as the server does.
 */
export * from "./core.js";
export { kernelsOrFallback } from "./engine/fallback.js";
export { createKernelRunner } from "./engine/runner.js";
export { GpuContext } from "./gpu/context.js";
export type { ModelRunner } from "./runtime/types.js";
export {
  configureWebRuntime,
  createWebRunner,
  type WebGpuSupport,
  webgpuSupport,
} from "./runtime/web.js";
export { runComparison } from "./serve/comparison.js";
export {
  firstLine,
  isGenerationResult,
  type JobEvent,
  type JobRequest,
  type JobResult,
  type Phase,
  parseJobRequest,
  type ServerInfo,
} from "./serve/protocol.js";
export { loadRemotePipeline } from "./serve/remote-pipeline.js";
