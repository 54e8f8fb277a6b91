/**
 * Async work done once per key: concurrent and later callers of a key share one promise. A
 * promise that rejects is dropped, so a failure (a build that ran out of memory, a file that was
 * being written) is not remembered and the next call for that key tries again.
 */
export class PromiseMemo<K, V> {
  private readonly entries = new Map<K, Promise<V>>();

  /** The promise of `key`, made by `make` when there is none (or the last one failed). */
  get(key: K, make: () => Promise<V>): Promise<V> {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = make();
      this.entries.set(key, entry);
      const made = entry;
      made.catch(() => {
        if (this.entries.get(key) === made) this.entries.delete(key);
      });
    }
    return entry;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Forgets every entry and returns their promises (to release what they made). */
  take(): Promise<V>[] {
    const values = [...this.entries.values()];
    this.entries.clear();
    return values;
  }

  /**
   * Forgets every entry and hands each value that was made to `release`, in insertion order;
   * entries that failed are skipped.
   */
  async releaseAll(release: (value: V) => Promise<void> | void): Promise<void> {
    for (const entry of this.take()) {
      let value: V;
      try {
        value = await entry;
      } catch {
        continue;
      }
      await release(value);
    }
  }
}
