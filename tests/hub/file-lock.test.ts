import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { acquireFileLock } from "../../src/hub/file-lock.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-lock-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let count = 0;
function lockPath(): string {
  return join(work, "locks", `blob-${count++}.lock`);
}

describe("acquireFileLock", () => {
  it("lets one holder in at a time and hands over on release", async () => {
    const path = lockPath();
    const order: string[] = [];
    const releaseFirst = await acquireFileLock(path, { pollMs: 5 });
    expect(JSON.parse(readFileSync(path, "utf8")).pid).toBe(process.pid);
    const second = acquireFileLock(path, { pollMs: 5 }).then((release) => {
      order.push("second acquired");
      return release;
    });
    await new Promise((done) => setTimeout(done, 30));
    order.push("first releases");
    releaseFirst();
    const releaseSecond = await second;
    expect(order).toEqual(["first releases", "second acquired"]);
    releaseSecond();
    expect(existsSync(path)).toBe(false);
  });

  it("takes over a lock whose holder on this host is dead", async () => {
    const path = lockPath();
    await acquireFileLock(path).then((release) => release());
    writeFileSync(path, JSON.stringify({ pid: 0x7ffffffe, host: hostname(), nonce: "dead" }));
    const release = await acquireFileLock(path, { pollMs: 5 });
    expect(JSON.parse(readFileSync(path, "utf8")).pid).toBe(process.pid);
    release();
  });

  it("takes over a lock nobody touched for staleMs, but waits on a fresh one", async () => {
    const path = lockPath();
    await acquireFileLock(path).then((release) => release());
    writeFileSync(path, JSON.stringify({ pid: 1, host: "another-host", nonce: "far" }));
    const waiting = new AbortController();
    setTimeout(() => waiting.abort(), 50);
    await expect(
      acquireFileLock(path, { staleMs: 60_000, pollMs: 5, signal: waiting.signal }),
    ).rejects.toThrow(/abort/i);
    const past = new Date(Date.now() - 120_000);
    utimesSync(path, past, past);
    const release = await acquireFileLock(path, { staleMs: 60_000, pollMs: 5 });
    expect(JSON.parse(readFileSync(path, "utf8")).host).toBe(hostname());
    release();
  });

  it("keeps its lock fresh while held", async () => {
    const path = lockPath();
    const release = await acquireFileLock(path, { staleMs: 40 });
    const past = new Date(Date.now() - 120_000);
    utimesSync(path, past, past);
    await new Promise((done) => setTimeout(done, 60));
    const { mtimeMs } = await import("node:fs").then((fs) => fs.statSync(path));
    expect(Date.now() - mtimeMs).toBeLessThan(1_000);
    release();
  });

  it("does not delete a lock that another holder took over", async () => {
    const path = lockPath();
    const release = await acquireFileLock(path);
    const theirs = JSON.stringify({ pid: process.pid, host: hostname(), nonce: "theirs" });
    writeFileSync(path, theirs);
    release();
    expect(readFileSync(path, "utf8")).toBe(theirs);
  });
});
