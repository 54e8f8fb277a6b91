// Where the reference fixtures live: ../shared/fixtures beside the project root.
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { SafetensorsFile } from "../src/weights/safetensors.js";

export const FIXTURES = resolve(process.cwd(), "..", "shared", "fixtures");

if (!existsSync(join(FIXTURES, "FIXTURES.md"))) {
  throw new Error(`reference fixtures not found at ${FIXTURES}; run tests from the project root`);
}

export function fixturePath(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

/** Parses a case JSON file; the non-finite numbers are written as strings there. */
export function readCaseJson<T>(name: string): T {
  return JSON.parse(readFileSync(fixturePath("cases", `${name}.json`), "utf8")) as T;
}

export function openCaseTensors(name: string): SafetensorsFile {
  return SafetensorsFile.open(fixturePath("cases", `${name}.safetensors`));
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Number.POSITIVE_INFINITY : d;
  }
  return max;
}
