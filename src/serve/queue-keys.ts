/** The Redis keys and channel the queue's front ends and workers share besides BullMQ's own. */
export const DEFAULT_QUEUE_NAME = "todo-sd";
export const DEFAULT_RETENTION_SECONDS = 86_400;

export interface QueueKeys {
  image(id: string, name: string): string;
  cancel(id: string): string;
  pending(key: string): string;
  readonly cancelChannel: string;
}

export function queueKeys(queueName: string): QueueKeys {
  const base = `todo-sd:${queueName}`;
  return {
    image: (id, name) => `${base}:image:${id}:${name}`,
    cancel: (id) => `${base}:cancel:${id}`,
    pending: (key) => `${base}:pending:${key}`,
    cancelChannel: `${base}:cancel`,
  };
}

/** What a queued job carries. */
export interface QueuedJobData {
  readonly spec: import("./job-spec.js").JobSpec;
  readonly owner: import("./jobs.js").JobOwner;
  readonly createdAt: string;
}

/** The failure reason of a job stopped by its client. */
export const CANCELLED_REASON = "cancelled";
