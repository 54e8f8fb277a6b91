import { describe, expect, it } from "vitest";
import {
  decodeGenerationRecord,
  encodeGenerationRecord,
  formatWebUiParameters,
  generationTextChunks,
  parseWebUiParameters,
  readGenerationInfo,
  type WebUiParameters,
  webUiSamplerName,
} from "../../src/image/parameters.js";
import { decodePng, encodePng } from "../../src/image/png.js";
import { readPngChunks } from "../../src/image/png-chunks.js";

const full: WebUiParameters = {
  prompt: "a photograph of an astronaut riding a horse",
  negativePrompt: "blurry",
  steps: 20,
  sampler: "Euler a",
  cfgScale: 7.5,
  seed: 1234567890,
  width: 1024,
  height: 768,
  modelHash: "6ce0161689",
  model: "v1-5-pruned-emaonly",
  denoisingStrength: 0.6,
  clipSkip: 2,
  extra: { ToDo: "x2 nearest", Version: "todo-sd 0.1.0" },
};

describe("formatWebUiParameters", () => {
  it("writes the web UI layout", () => {
    expect(formatWebUiParameters(full)).toBe(
      "a photograph of an astronaut riding a horse\n" +
        "Negative prompt: blurry\n" +
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234567890, Size: 1024x768, " +
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.6, Clip skip: 2, " +
        "ToDo: x2 nearest, Version: todo-sd 0.1.0",
    );
  });

  it("omits the negative prompt line when there is none and quotes values with , or :", () => {
    const text = formatWebUiParameters({
      prompt: "cat",
      steps: 4,
      sampler: "DDIM",
      seed: 0,
      extra: { Note: 'a, b: "c"' },
    });
    expect(text).toBe('cat\nSteps: 4, Sampler: DDIM, Seed: 0, Note: "a, b: \\"c\\""');
  });

  it("rejects what the format cannot hold", () => {
    expect(() => formatWebUiParameters({ prompt: "", extra: { "a,b": "x" } })).toThrow(
      /web UI parameter name "a,b" is invalid/,
    );
    expect(() => formatWebUiParameters({ prompt: "", extra: { Seed: "x" } })).toThrow(/is invalid/);
    expect(() => formatWebUiParameters({ prompt: "", cfgScale: Number.NaN })).toThrow(
      "web UI parameter CFG scale must be finite, got NaN",
    );
    expect(() => formatWebUiParameters({ prompt: "", width: 512 })).toThrow(
      /both width and height/,
    );
  });
});

describe("parseWebUiParameters", () => {
  it("round-trips every field", () => {
    expect(parseWebUiParameters(formatWebUiParameters(full))).toEqual(full);
  });

  it("round-trips multi-line and unicode prompts, empty prompts and awkward values", () => {
    const cases: WebUiParameters[] = [
      {
        prompt: "line one\nline two: with colon, and comma",
        negativePrompt: "bad\nworse",
        steps: 1,
        seed: 2,
        cfgScale: 3,
      },
      {
        prompt: "",
        negativePrompt: "only negative",
        steps: 30,
        sampler: "DPM++ 2M Karras",
        seed: 5,
      },
      { prompt: "雪の中の猫 🐈", steps: 8, seed: 4294967295, width: 640, height: 448 },
      {
        prompt: "x",
        steps: 2,
        seed: 3,
        cfgScale: 1,
        extra: { Quoted: '"already quoted"', Spaces: " padded " },
      },
      { prompt: "no settings at all" },
    ];
    for (const params of cases) {
      expect(parseWebUiParameters(formatWebUiParameters(params))).toEqual(params);
    }
  });

  it("reads text written by the web UI, keeping unknown settings in order", () => {
    const text =
      "masterpiece, 1girl\n" +
      "Negative prompt: lowres, bad anatomy\n" +
      "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3902213, Size: 512x768, " +
      'Model hash: e1441589a6, Model: anything-v5, Denoising strength: 0.55, Lora hashes: "detail: 62e8, style: 9a1b", ' +
      "Hires upscale: 2, Version: v1.6.0";
    const parsed = parseWebUiParameters(text);
    expect(parsed).toEqual({
      prompt: "masterpiece, 1girl",
      negativePrompt: "lowres, bad anatomy",
      steps: 28,
      sampler: "DPM++ 2M Karras",
      cfgScale: 7,
      seed: 3902213,
      width: 512,
      height: 768,
      modelHash: "e1441589a6",
      model: "anything-v5",
      denoisingStrength: 0.55,
      extra: {
        "Lora hashes": "detail: 62e8, style: 9a1b",
        "Hires upscale": "2",
        Version: "v1.6.0",
      },
    });
    expect(Object.keys(parsed.extra ?? {})).toEqual(["Lora hashes", "Hires upscale", "Version"]);
  });

  it("reads a last line with fewer than three settings as prompt, and bad numbers as text", () => {
    expect(parseWebUiParameters("a cat\nstyle: photo, mood: calm")).toEqual({
      prompt: "a cat\nstyle: photo, mood: calm",
    });
    expect(parseWebUiParameters("p\r\nSteps: many, Seed: 1, Size: big")).toEqual({
      prompt: "p",
      seed: 1,
      extra: { Steps: "many", Size: "big" },
    });
  });
});

describe("webUiSamplerName", () => {
  it("maps diffusers scheduler classes and Karras sigmas", () => {
    expect(webUiSamplerName("EulerAncestralDiscreteScheduler")).toBe("Euler a");
    expect(webUiSamplerName("DPMSolverMultistepScheduler", { use_karras_sigmas: true })).toBe(
      "DPM++ 2M Karras",
    );
    expect(
      webUiSamplerName("DPMSolverMultistepScheduler", { algorithm_type: "sde-dpmsolver++" }),
    ).toBe("DPM++ 2M SDE");
    expect(webUiSamplerName("MyOwnScheduler")).toBe("MyOwnScheduler");
  });
});

describe("generation record", () => {
  it("writes non-finite numbers as strings", () => {
    const text = encodeGenerationRecord({
      sigmaMin: Number.NEGATIVE_INFINITY,
      list: [Number.NaN, 1],
    });
    expect(text).toBe('{"sigmaMin":"-Infinity","list":["NaN",1]}');
    expect(decodeGenerationRecord(text, "x")).toEqual({ sigmaMin: "-Infinity", list: ["NaN", 1] });
  });

  it("rejects a record that is not a JSON object", () => {
    expect(() => decodeGenerationRecord("{oops", "img.png")).toThrow(
      /^img\.png: the todo-sd record is not valid JSON \(/,
    );
    expect(() => decodeGenerationRecord("[1]", "img.png")).toThrow(
      "img.png: the todo-sd record is not a JSON object",
    );
  });

  it("travels through a PNG with the parameters", () => {
    const params: WebUiParameters = {
      prompt: "雪の猫",
      steps: 4,
      sampler: "Euler",
      seed: 9,
      width: 2,
      height: 1,
    };
    const record = { prompt: "雪の猫", seed: 9, todo: { factor: 2, method: "nearest" } };
    const png = encodePng(
      { width: 2, height: 1, data: new Uint8Array(6) },
      generationTextChunks(params, record),
    );
    expect(readPngChunks(png, "x").map((chunk) => chunk.type)).toEqual([
      "IHDR",
      "iTXt",
      "iTXt",
      "IDAT",
      "IEND",
    ]);
    expect(readGenerationInfo(decodePng(png, "x").text, "x")).toEqual({
      parameters: params,
      record,
    });
    expect(readGenerationInfo({}, "x")).toEqual({});
  });
});
