import { describe, expect, it } from "vitest";
import { PromiseMemo } from "../../src/util/promise-memo.js";

describe("PromiseMemo", () => {
  it("makes each key once and shares the promise between callers", async () => {
    const memo = new PromiseMemo<string, number>();
    let made = 0;
    const make = () => Promise.resolve(++made);
    const [a, b] = [memo.get("k", make), memo.get("k", make)];
    expect(a).toBe(b);
    expect(await a).toBe(1);
    expect(await memo.get("other", make)).toBe(2);
    expect(await memo.get("k", make)).toBe(1);
    expect(memo.size).toBe(2);
  });

  it("drops a promise that fails, so the next call tries again", async () => {
    const memo = new PromiseMemo<string, string>();
    await expect(memo.get("k", () => Promise.reject(new Error("no memory")))).rejects.toThrow(
      "no memory",
    );
    // The rejection handler runs before the caller's await resumes.
    expect(memo.has("k")).toBe(false);
    expect(await memo.get("k", () => Promise.resolve("built"))).toBe("built");
  });

  it("releases every value that was made, in order, skipping failures, and forgets them", async () => {
    const memo = new PromiseMemo<number, string>();
    memo.get(1, () => Promise.resolve("one"));
    memo.get(2, () => Promise.reject(new Error("failed"))).catch(() => {});
    memo.get(3, () => Promise.resolve("three"));
    const released: string[] = [];
    await memo.releaseAll((value) => {
      released.push(value);
    });
    expect(released).toEqual(["one", "three"]);
    expect(memo.size).toBe(0);
  });
});
