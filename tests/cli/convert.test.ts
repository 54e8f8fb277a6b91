// `todo-sd convert` on the sd15-tiny fixture: one component, every component, reduction
// settings in the metadata, and bad input.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readModel } from "../../src/onnx/model-io.js";
import { expectOneLineError, filesIn, runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

function metadata(path: string): Record<string, string> {
  const model = readModel(path, false);
  return Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key, p.value]));
}

describe("convert", () => {
  it("writes the UNet with ToDo settings in its metadata", async () => {
    const out = join(ws.outDir(), "unet.onnx");
    const run = await runCli(["convert", SD15, "--component", "unet", "-o", out, "--todo", "2"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe(`${out}\n`);
    const props = metadata(out);
    expect(props["todo_sd.component"]).toBe("unet");
    expect(props["todo_sd.reduction.method"]).toBe("todo");
    expect(props["todo_sd.reduction.factor"]).toBe("2");
  });

  it("writes a component other than the UNet when no reduction flag is given", async () => {
    const out = join(ws.outDir(), "vae.onnx");
    const run = await runCli(["convert", SD15, "--component", "vae_decoder", "-o", out]);
    expect(run.code, run.stderr).toBe(0);
    expect(metadata(out)["todo_sd.component"]).toBe("vae_decoder");
    expect(metadata(out)["todo_sd.reduction.method"]).toBeUndefined();
  });

  it("writes every component with --component all", async () => {
    const out = ws.outDir();
    const run = await runCli(["convert", SD15, "--component", "all", "-o", out]);
    expect(run.code, run.stderr).toBe(0);
    const expected = ["unet", "text_encoder", "vae_decoder", "vae_encoder"].map((c) =>
      join(out, c, "model.onnx"),
    );
    expect(run.stdout.trim().split("\n")).toEqual(expected);
    for (const path of expected) expect(metadata(path)["todo_sd.source"]).toBe("sd15-tiny");
  });

  describe("bad input: one line on stderr, non-zero exit, no file written", () => {
    it("an unknown flag, and an unknown component", async () => {
      const out = ws.outDir();
      const run = await runCli(["convert", SD15, "--component", "unet", "-o", out, "--fp16"]);
      expectOneLineError(run, /unknown option '--fp16'/);
      const component = await runCli(["convert", SD15, "--component", "clip", "-o", out]);
      expectOneLineError(component, /unknown component "clip"/);
      expect(filesIn(out)).toEqual([]);
    });

    it("a missing or truncated model", async () => {
      const out = ws.outDir();
      const target = join(out, "unet.onnx");
      const missing = await runCli([
        "convert",
        ws.path("gone.safetensors"),
        "--component",
        "unet",
        "-o",
        target,
      ]);
      expectOneLineError(missing, /gone\.safetensors: no such file or folder/);
      const truncated = await runCli([
        "convert",
        ws.truncatedCheckpoint(),
        "--component",
        "unet",
        "-o",
        target,
      ]);
      expectOneLineError(truncated, /not a valid safetensors file/);
      expect(filesIn(out)).toEqual([]);
    });

    it("a size that is not a multiple of 8", async () => {
      const out = ws.outDir();
      const run = await runCli([
        "convert",
        SD15,
        "--component",
        "unet",
        "-o",
        join(out, "unet.onnx"),
        "--todo",
        "auto",
        "--size",
        "1020",
      ]);
      expectOneLineError(run, /1020x1020: each side must be a positive multiple of 8/);
      expect(filesIn(out)).toEqual([]);
    });

    it("an output path that cannot be written", async () => {
      const single = await runCli([
        "convert",
        SD15,
        "--component",
        "unet",
        "-o",
        ws.underRegularFile("unet.onnx"),
      ]);
      expectOneLineError(single, /^todo-sd: --out: .*regular-file is a file, not a folder$/);
      const all = await runCli([
        "convert",
        SD15,
        "--component",
        "all",
        "-o",
        ws.underRegularFile(),
      ]);
      expectOneLineError(
        all,
        /--out: output folder .*regular-file\/sub is not writable \(ENOTDIR\)/,
      );
    });
  });
});
