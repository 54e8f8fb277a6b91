// Request checking shared by the server and the in-browser engine: every bad field gets a
// one-line message naming it; good requests come back complete.
import { describe, expect, it } from "vitest";
import { resolveReduction } from "../../src/reduce/options.js";
import {
  DEFAULT_LIMITS,
  parseJobRequest,
  RequestError,
  type ValidationContext,
} from "../../src/serve/protocol.js";
import { tinyRequest } from "./helpers.js";

const context: ValidationContext = {
  limits: DEFAULT_LIMITS,
  sizeMultiple: 8,
  textEncoderLayers: 12,
  resolveReduction(options, width, height) {
    const settings = resolveReduction(options, { architecture: "sd1", width, height });
    const reduces =
      settings.method === "todo"
        ? settings.factor > 1 || settings.factorLevel2 > 1
        : settings.ratio > 0 || settings.ratioLevel2 > 0;
    return reduces ? settings : undefined;
  },
  randomSeed: () => 1234,
};

function errorOf(body: unknown): string {
  try {
    parseJobRequest(body, context);
  } catch (error) {
    expect(error).toBeInstanceOf(RequestError);
    const message = (error as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error("expected a RequestError");
}

describe("parseJobRequest", () => {
  it("fills in defaults and resolves the reduction for the size", () => {
    const params = parseJobRequest(
      tinyRequest({ seed: undefined, width: 1024, height: 1024, reduction: { method: "todo" } }),
      context,
    );
    expect(params.seed).toBe(1234);
    expect(params.negativePrompt).toBeNull();
    expect(params.scheduler).toBeNull();
    expect(params.clipSkip).toBe(0);
    // auto ToDo at 1024 px: factor 2 at level 1.
    expect(params.settings.factor).toBe(2);
    expect(params.settings.factorLevel2).toBe(1);
  });

  it("keeps what was given", () => {
    const params = parseJobRequest(
      tinyRequest({
        negativePrompt: "blurry",
        scheduler: "Euler a",
        clipSkip: 1,
        reduction: { method: "tome", ratio: 0.4 },
      }),
      context,
    );
    expect(params).toMatchObject({
      prompt: "a red cube on a table",
      negativePrompt: "blurry",
      scheduler: "Euler a",
      seed: 42,
      clipSkip: 1,
      width: 128,
      steps: 3,
    });
    expect(params.settings.method).toBe("tome");
    expect(params.settings.ratio).toBe(0.4);
  });

  it.each([
    ["not an object", [], "the request must be a JSON object"],
    ["unknown field", { ...tinyRequest(), colour: 1 }, 'unknown field "colour"'],
    ["missing prompt", { ...tinyRequest(), prompt: undefined }, "prompt: required"],
    ["blank prompt", tinyRequest({ prompt: "   " }), "prompt: type a prompt"],
    ["prompt not text", { ...tinyRequest(), prompt: 3 }, "prompt: must be text"],
    ["long prompt", tinyRequest({ prompt: "x".repeat(2001) }), "prompt: 2001 characters"],
    [
      "width not a multiple",
      tinyRequest({ width: 100 }),
      "width: must be a multiple of 8; got 100",
    ],
    ["width too large", tinyRequest({ width: 8192 }), "width: must be from 64 to 4096; got 8192"],
    ["height too small", tinyRequest({ height: 32 }), "height: must be from 64 to 4096; got 32"],
    ["width not whole", tinyRequest({ width: 128.5 }), "width: must be a whole number"],
    [
      "width as text",
      { ...tinyRequest(), width: "128" },
      'width: must be a whole number; got "128"',
    ],
    ["steps zero", tinyRequest({ steps: 0 }), "steps: must be from 1 to 200; got 0"],
    ["steps missing", { ...tinyRequest(), steps: undefined }, "steps: required"],
    ["guidance NaN", { ...tinyRequest(), guidanceScale: null }, "guidanceScale: must be a number"],
    [
      "guidance large",
      tinyRequest({ guidanceScale: 80 }),
      "guidanceScale: must be a number from 0 to 50",
    ],
    ["seed negative", tinyRequest({ seed: -1 }), "seed: must be from 0 to 4294967295; got -1"],
    ["clip skip", tinyRequest({ clipSkip: 11 }), "clipSkip: must be from 0 to 10; got 11"],
    [
      "scheduler",
      tinyRequest({ scheduler: "Warp drive" }),
      'scheduler: unknown sampler "Warp drive"',
    ],
    ["no reduction", { ...tinyRequest(), reduction: undefined }, "reduction: required"],
    [
      "bad factor",
      tinyRequest({ reduction: { factor: 0 } }),
      "reduction: factor: the factor must be",
    ],
    ["bad mode", tinyRequest({ reduction: { mode: "fancy" } }), "reduction: mode: unknown mode"],
    [
      "factor too large for the grid",
      tinyRequest({ reduction: { factor: 32 } }),
      "reduction: factor: factor 32 does not fit",
    ],
    [
      "auto reduces nothing at 128 px",
      tinyRequest({ reduction: { method: "todo" } }),
      "reduction: these settings reduce nothing at 128x128",
    ],
  ])("rejects %s", (_label, body, expected) => {
    expect(errorOf(body)).toContain(expected);
  });
});
