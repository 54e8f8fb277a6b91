// The library words its errors by option, the command line by flag: one error, two wordings.
import { afterAll, describe, expect, it } from "vitest";
import { flagWordedMessage } from "../../src/cli/option-flags.js";
import { convertModel } from "../../src/pipelines/convert.js";
import { parseReductionOptions, resolveReduction } from "../../src/reduce/options.js";
import { OptionError } from "../../src/util/option-error.js";
import { expectOneLineError, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

describe("errors about options", () => {
  it("name the option for a library caller and the flag on the command line", async () => {
    const out = ws.path("model.txt");
    const library = convertModel(SD15, { component: "unet", out });
    await expect(library).rejects.toThrow(OptionError);
    await expect(library).rejects.toThrow(
      new RegExp(`^out must name an \\.onnx file for one component; got ${out}$`),
    );
    const run = await runCli(["convert", SD15, "--component", "unet", "-o", out]);
    expectOneLineError(run, /^todo-sd: --out must name an \.onnx file for one component; got /);
  });

  it("reword each option the library names, and leave other errors as they are", () => {
    let error: unknown;
    try {
      resolveReduction(parseReductionOptions(), { architecture: "sd1" });
    } catch (caught) {
      error = caught;
    }
    expect((error as Error).message).toBe(
      "factor auto needs the image size; give a factor or the width and height",
    );
    expect(flagWordedMessage(error)).toBe(
      "--todo auto needs the image size; give a factor or the width and height",
    );
    const server = new OptionError(
      (name) => `${name("host")} 0.0.0.0 needs keys (${name("apiKeys")})`,
    );
    expect(server.message).toBe("host 0.0.0.0 needs keys (apiKeys)");
    expect(flagWordedMessage(server)).toBe("--host 0.0.0.0 needs keys (--api-key)");
    expect(flagWordedMessage(new Error("out: not an option error"))).toBe(
      "out: not an option error",
    );
  });
});
