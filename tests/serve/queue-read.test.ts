// The order in which the Redis front end reads a job: its state first, then its record, so that a
// job that fails between the two reads is never reported as failed without its reason.
import { describe, expect, it } from "vitest";
import { readJob } from "../../src/serve/queue-jobs.js";

interface Record_ {
  readonly id: string;
  readonly failedReason: string;
}

/** A queue whose one job is stalled out (failed, with its reason) after the first read. */
function failingBetweenReads() {
  let reads = 0;
  const now = (): { state: string; record: Record_ } => {
    reads += 1;
    return reads === 1
      ? { state: "active", record: { id: "j", failedReason: "" } }
      : {
          state: "failed",
          record: { id: "j", failedReason: "job stalled more than allowable limit" },
        };
  };
  return {
    async getJobState(_id: string): Promise<string> {
      return now().state;
    },
    async getJob(_id: string): Promise<Record_ | undefined> {
      return now().record;
    },
  };
}

describe("reading a job from the queue", () => {
  it("never pairs a failed state with a record from before the failure", async () => {
    const read = await readJob(failingBetweenReads(), "j");
    expect(read).toBeDefined();
    // The state was read while the job still ran; the record read after it is newer.
    expect(read?.state).toBe("active");
    expect(read?.job.failedReason).toBe("job stalled more than allowable limit");
  });

  it("reads a failed job with its reason", async () => {
    const read = await readJob(
      {
        getJobState: async () => "failed",
        getJob: async () => ({ id: "j", failedReason: "width must be a multiple of 8" }),
      },
      "j",
    );
    expect(read).toEqual({
      state: "failed",
      job: { id: "j", failedReason: "width must be a multiple of 8" },
    });
  });

  it("has nothing for a job that is gone", async () => {
    const read = await readJob(
      { getJobState: async () => "unknown", getJob: async () => undefined },
      "j",
    );
    expect(read).toBeUndefined();
  });
});
