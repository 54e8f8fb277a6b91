// LoRAs through the server: the LoRA folder's list in /api/info, a job's LoRAs by name (the
// demo's sliders) and by `<lora:name:weight>` prompt tags, each giving the images a direct
// generate({loras}) gives, and unknown names refused before anything is queued.
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodePng,
  encodeResultPng,
  type GenerateOptions,
  loadPipeline,
  type StableDiffusionPipeline,
} from "../../src/index.js";
import { resolveReduction } from "../../src/reduce/options.js";
import {
  DEFAULT_LIMITS,
  parseJobRequest,
  type ServerInfo,
  type ValidationContext,
} from "../../src/serve/protocol.js";
import { fixturePath } from "../fixtures.js";
import {
  fetchAs,
  postJson,
  runJob,
  startTestServer,
  type TestServer,
  TINY_MODEL,
  tinyRequest,
} from "./helpers.js";

const KOHYA = fixturePath("lora", "style.kohya.safetensors");
const loraDir = mkdtempSync(join(tmpdir(), "todo-sd-serve-lora-"));
copyFileSync(KOHYA, join(loraDir, "style.safetensors"));

let test: TestServer;
let direct: StableDiffusionPipeline;

beforeAll(async () => {
  test = await startTestServer({ loraDir });
  direct = await loadPipeline(TINY_MODEL, { cacheDir: false });
}, 240_000);

afterAll(async () => {
  await test?.close();
  await direct?.release();
  rmSync(loraDir, { recursive: true, force: true });
});

/** The RGB samples of a PNG. */
function pixels(png: Uint8Array): Uint8Array {
  return decodePng(png, "image").data;
}

/** The pixels a direct generation gives, through the same PNG encoding as the server's. */
async function directPixels(options: GenerateOptions): Promise<Uint8Array> {
  return pixels(encodeResultPng(await direct.generate(options), 0, TINY_MODEL));
}

function jobsLogged(): number {
  return test.log.filter((line) => line.startsWith("job ")).length;
}

describe("LoRAs on the server", () => {
  it("lists the folder's LoRAs for the model's family in /api/info", async () => {
    const info = (await (await fetch(`${test.url}/api/info`)).json()) as ServerInfo;
    expect(info.loras.map((l) => l.name)).toEqual(["style"]);
    expect(info.loras[0].families).toContain(info.family);
    expect(info.loras[0].hash).toMatch(/^[0-9a-f]{12}$/);
  });

  it("runs a demo job with a LoRA by name as generate({loras}) does", async () => {
    const request = tinyRequest({ loras: [{ name: "style", weight: 1 }] });
    const { id, events } = await runJob(test.url, request);
    expect(events.at(-1)?.type).toBe("done");
    const response = await fetchAs(`${test.url}/api/jobs/${id}/images/baseline.png`);
    expect(response.status).toBe(200);
    const served = pixels(new Uint8Array(await response.arrayBuffer()));
    const options: GenerateOptions = {
      prompt: request.prompt,
      width: request.width,
      height: request.height,
      steps: request.steps,
      guidanceScale: request.guidanceScale,
      seed: request.seed,
    };
    const withLora = await directPixels({ ...options, loras: [{ path: KOHYA, weight: 1 }] });
    const base = await directPixels(options);
    expect(Buffer.from(served).equals(Buffer.from(withLora))).toBe(true);
    expect(Buffer.from(served).equals(Buffer.from(base))).toBe(false);
  }, 240_000);

  it("takes <lora:name:weight> tags out of the prompt and merges those LoRAs", async () => {
    const response = await postJson(`${test.url}/sdapi/v1/txt2img`, {
      prompt: "a red cube <lora:style:1>",
      steps: 2,
      cfg_scale: 7,
      width: 64,
      height: 64,
      seed: 5,
    });
    expect(response.status).toBe(200);
    const served = pixels(
      new Uint8Array(Buffer.from((response.body.images as string[])[0], "base64")),
    );
    const options: GenerateOptions = {
      prompt: "a red cube",
      width: 64,
      height: 64,
      steps: 2,
      guidanceScale: 7,
      seed: 5,
    };
    const withLora = await directPixels({ ...options, loras: [{ path: KOHYA, weight: 1 }] });
    const base = await directPixels(options);
    expect(Buffer.from(served).equals(Buffer.from(withLora))).toBe(true);
    expect(Buffer.from(served).equals(Buffer.from(base))).toBe(false);
  }, 240_000);

  it("merges --lora files into every job's models (the generation process loads them)", async () => {
    const merged = await startTestServer({ load: { loras: [{ path: KOHYA, weight: 1 }] } });
    try {
      const response = await postJson(`${merged.url}/sdapi/v1/txt2img`, {
        prompt: "a red cube",
        steps: 2,
        cfg_scale: 7,
        width: 64,
        height: 64,
        seed: 5,
      });
      expect(response.status).toBe(200);
      const served = pixels(
        new Uint8Array(Buffer.from((response.body.images as string[])[0], "base64")),
      );
      const options: GenerateOptions = {
        prompt: "a red cube",
        width: 64,
        height: 64,
        steps: 2,
        guidanceScale: 7,
        seed: 5,
      };
      const withLora = await directPixels({ ...options, loras: [{ path: KOHYA, weight: 1 }] });
      expect(Buffer.from(served).equals(Buffer.from(withLora))).toBe(true);
      // No folder: LoRAs by name are refused.
      const info = (await (await fetch(`${merged.url}/api/info`)).json()) as ServerInfo;
      expect(info.loras).toEqual([]);
    } finally {
      await merged.close();
    }
  }, 240_000);

  it("refuses unknown LoRA names and bad weights with one line, queueing nothing", async () => {
    const before = jobsLogged();
    const byName = await postJson(
      `${test.url}/api/generate`,
      tinyRequest({ loras: [{ name: "nope", weight: 1 }] }),
    );
    expect(byName.status).toBe(400);
    expect(byName.body.error).toMatch(/^<lora:nope>: no LoRA of that name in .*; it has style$/);
    const badWeight = await postJson(
      `${test.url}/api/generate`,
      tinyRequest({ loras: [{ name: "style", weight: "strong" as unknown as number }] }),
    );
    expect(badWeight.status).toBe(400);
    expect(badWeight.body.error).toBe("loras: the weight of style must be a finite number");
    const byTag = await postJson(`${test.url}/sdapi/v1/txt2img`, {
      prompt: "a cube <lora:nope:1>",
      steps: 1,
      width: 64,
      height: 64,
    });
    expect(byTag.status).toBe(400);
    expect(byTag.body.error).toMatch(/^<lora:nope>: no LoRA of that name/);
    expect(jobsLogged()).toBe(before);
  });
});

describe("a job's LoRAs where no folder resolves them (the browser engine, a server without one)", () => {
  const context: ValidationContext = {
    limits: DEFAULT_LIMITS,
    sizeMultiple: 8,
    textEncoderLayers: 12,
    resolveReduction: (options, width, height) =>
      resolveReduction(options, { architecture: "sd1", width, height }),
  };

  it("refuses LoRAs by name or by tag, and leaves LoRA-free requests alone", () => {
    expect(() =>
      parseJobRequest(tinyRequest({ loras: [{ name: "style", weight: 1 }] }), context),
    ).toThrow(/^loras: this server has no LoRA folder \(serve --lora-dir\)$/);
    expect(() => parseJobRequest(tinyRequest({ prompt: "a cube <lora:style>" }), context)).toThrow(
      /no LoRA folder/,
    );
    const refusing: ValidationContext = {
      ...context,
      resolveLoras: () => {
        throw new Error("LoRAs run on the server engine only");
      },
    };
    expect(() =>
      parseJobRequest(tinyRequest({ loras: [{ name: "style", weight: 0.5 }] }), refusing),
    ).toThrow("LoRAs run on the server engine only");
    // Weight 0 is a slider left at off: no LoRA, nothing to resolve.
    const off = parseJobRequest(tinyRequest({ loras: [{ name: "style", weight: 0 }] }), refusing);
    expect(off.loras).toBeUndefined();
    expect(off.prompt).toBe(tinyRequest().prompt);
  });
});
