// The routes that speak other APIs fill in what a request leaves out with that API's defaults.
import { describe, expect, it } from "vitest";
import { encodePng } from "../../src/image/png.js";
import { API_DEFAULTS, checkGeneration } from "../../src/serve/generation-request.js";
import { DEFAULT_LIMITS, type ValidationContext } from "../../src/serve/protocol.js";

const context: ValidationContext = {
  limits: DEFAULT_LIMITS,
  sizeMultiple: 8,
  textEncoderLayers: 12,
  resolveReduction: () => undefined,
  randomSeed: () => 1234,
};

const initImage = Buffer.from(
  encodePng({ width: 8, height: 8, channels: 3, data: new Uint8Array(8 * 8 * 3) }),
).toString("base64");

describe("checkGeneration's defaults", () => {
  it("are each API's own: the web UI's for txt2img and img2img, OpenAI-style's", () => {
    const webui = { size: 64, ...API_DEFAULTS.webui };
    expect(checkGeneration({ prompt: "x" }, context, webui)).toMatchObject({
      width: 64,
      height: 64,
      steps: 20,
      guidanceScale: 7,
      strength: null,
    });
    expect(checkGeneration({ prompt: "x", initImage }, context, webui).strength).toBe(0.75);
    const openai = { size: 64, ...API_DEFAULTS.openai };
    expect(checkGeneration({ prompt: "x" }, context, openai)).toMatchObject({
      steps: 20,
      guidanceScale: 7.5,
    });
    expect(() => checkGeneration({ prompt: "x", initImage }, context, openai)).toThrow(
      /^strength: required with an init image$/,
    );
  });
});
