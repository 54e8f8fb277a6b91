// `todo-sd patch` on the exported fixture UNets: blocks patched per level, `auto` with --size,
// refusals that write nothing, and bad input.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readModel } from "../../src/onnx/model-io.js";
import { fixturePath } from "../fixtures.js";
import { expectOneLineError, filesIn, runCli, SD15_ONNX, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

const SD15_UNET = join(SD15_ONNX, "unet", "model.onnx");
const SDXL_UNET = fixturePath("onnx", "sdxl-tiny-unet", "model.onnx");

const SD15_REPORT = [
  "level 1: 5 self-attention blocks patched (sdpa-attention)",
  "level 2: 5 self-attention blocks left as is",
  "level 3: 5 self-attention blocks left as is",
  "level 4: 1 self-attention block left as is",
  "16 cross-attention blocks left as is",
];

function metadata(path: string): Record<string, string> {
  const model = readModel(path, false);
  return Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key, p.value]));
}

describe("patch", () => {
  it("patches the sd15 export's UNet and prints the blocks per level", async () => {
    const out = join(ws.outDir(), "unet-todo.onnx");
    const run = await runCli(["patch", SD15_UNET, "--out", out, "--todo", "2"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim().split("\n")).toEqual([...SD15_REPORT, out]);
    expect(run.stderr).toMatch(/^token reduction: ToDo nearest factor 2 at level 1;/);
    expect(metadata(out)["todo_sd.patch.blocks_per_level"]).toBe("1:5");
  });

  it("picks the auto factors for --size, at both levels", async () => {
    const out = join(ws.outDir(), "unet-auto.onnx");
    const run = await runCli(["patch", SD15_UNET, "-o", out, "--size", "2048"]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^level 1: 5 self-attention blocks patched/m);
    expect(run.stdout).toMatch(/^level 2: 5 self-attention blocks patched/m);
    const props = metadata(out);
    expect(props["todo_sd.reduction.factor"]).toBe("4");
    expect(props["todo_sd.reduction.factor_level2"]).toBe("2");
    expect(props["todo_sd.patch.blocks_per_level"]).toBe("1:5,2:5");
  });

  it("patches SDXL at level 2 and writes weights beside the model on request", async () => {
    const dir = ws.outDir();
    const out = join(dir, "unet.onnx");
    const run = await runCli([
      "patch",
      SDXL_UNET,
      "-o",
      out,
      "--todo",
      "2",
      "--todo-mode",
      "avg",
      "--external-data",
      "always",
    ]);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^level 2: 10 self-attention blocks patched/m);
    expect(filesIn(dir).sort()).toEqual(["unet.onnx", "unet.onnx_data"]);
    expect(metadata(out)["todo_sd.reduction.mode"]).toBe("avg");
  });

  describe("bad input: one line on stderr, non-zero exit, no file written", () => {
    it("settings that reduce no level with self-attention", async () => {
      const dir = ws.outDir();
      const run = await runCli([
        "patch",
        SDXL_UNET,
        "-o",
        join(dir, "x.onnx"),
        "--todo",
        "2",
        "--todo-level2",
        "1",
      ]);
      expectOneLineError(
        run,
        /the settings reduce nothing in .*: its self-attention sits at levels 2, 3/,
      );
      expect(filesIn(dir)).toEqual([]);
    });

    it("a model that is not a UNet", async () => {
      const dir = ws.outDir();
      const vae = join(SD15_ONNX, "vae_decoder", "model.onnx");
      const run = await runCli(["patch", vae, "-o", join(dir, "x.onnx"), "--todo", "2"]);
      expectOneLineError(run, /vae_decoder\/model\.onnx is not a UNet/);
      expect(filesIn(dir)).toEqual([]);
    });

    it("--todo auto without a size on a dynamic-shape export", async () => {
      const dir = ws.outDir();
      const run = await runCli(["patch", SD15_UNET, "-o", join(dir, "x.onnx")]);
      expectOneLineError(run, /--todo auto needs the image size/);
      expect(filesIn(dir)).toEqual([]);
    });

    it("an unknown flag", async () => {
      const dir = ws.outDir();
      const run = await runCli(["patch", SD15_UNET, "-o", join(dir, "x.onnx"), "--level", "2"]);
      expectOneLineError(run, /unknown option '--level'/);
      expect(filesIn(dir)).toEqual([]);
    });

    it("a missing or truncated model", async () => {
      const dir = ws.outDir();
      const out = join(dir, "x.onnx");
      const missing = await runCli(["patch", ws.path("gone.onnx"), "-o", out, "--todo", "2"]);
      expectOneLineError(missing, /gone\.onnx: cannot read \(ENOENT\)/);
      const bytes = readFileSync(fixturePath("onnx", "sd15-tiny-unet-sdpa", "model.onnx"));
      const cut = ws.write("cut.onnx", bytes.subarray(0, bytes.length >> 1));
      const truncated = await runCli(["patch", cut, "-o", out, "--todo", "2"]);
      expectOneLineError(truncated, /cut\.onnx/);
      expect(filesIn(dir)).toEqual([]);
    });

    it("a size that is not a multiple of 8", async () => {
      const dir = ws.outDir();
      const run = await runCli([
        "patch",
        SD15_UNET,
        "-o",
        join(dir, "x.onnx"),
        "--size",
        "1000x1004",
      ]);
      expectOneLineError(run, /1000x1004: each side must be a positive multiple of 8/);
      expect(filesIn(dir)).toEqual([]);
    });

    it("an output path that cannot be written, or the input itself", async () => {
      const run = await runCli([
        "patch",
        SD15_UNET,
        "-o",
        ws.underRegularFile("x.onnx"),
        "--todo",
        "2",
      ]);
      expectOneLineError(run, /--out: .*regular-file is a file, not a folder$/);
      const copy = ws.write("in-place.onnx", readFileSync(SDXL_UNET));
      const same = await runCli(["patch", copy, "-o", copy, "--todo", "2"]);
      expectOneLineError(same, /--out must name a new file, not the input/);
      expect(readFileSync(copy).equals(readFileSync(SDXL_UNET))).toBe(true);
    });
  });
});
