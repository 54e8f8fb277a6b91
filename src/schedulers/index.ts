// The samplers' public surface: the interface, the registry and the config type.
export type { SchedulerConfigJson } from "./config.js";
export { createScheduler, listSchedulerClasses, listSchedulers } from "./registry.js";
export type { Scheduler } from "./types.js";
