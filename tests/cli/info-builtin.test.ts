// `info` on a UNet with ToDo built in (convert --todo): the same levels and blocks as the plain
// export, the reduced blocks per level, and the settings stored in its metadata_props.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, SD15, Workspace } from "./helpers.js";

const ws = new Workspace();
afterAll(() => ws.remove());

interface AttentionJson {
  levels: { level: number; selfAttentionBlocks: number }[];
  crossAttentionBlocks: number;
  builtIn?: {
    description: string;
    settings: Record<string, string>;
    reducedBlocksPerLevel: Record<string, number>;
  };
}

async function convertAndInspect(name: string, ...flags: string[]) {
  const path = join(ws.root, `${name}.onnx`);
  const convert = await runCli(["convert", SD15, "--component", "unet", "-o", path, ...flags]);
  expect(convert.code, convert.stderr).toBe(0);
  const info = await runCli(["info", path, "--size", "2048", "--json"]);
  expect(info.code, info.stderr).toBe(0);
  const text = await runCli(["info", path, "--size", "2048"]);
  return { json: JSON.parse(info.stdout).attention as AttentionJson, text: text.stdout };
}

describe("info on a UNet with token reduction built in", () => {
  it("reports every level, the reduced blocks and the stored settings", async () => {
    const plain = await convertAndInspect("plain");
    const reduced = await convertAndInspect("todo", "--todo", "auto", "--size", "2048");
    expect(plain.json.levels.map((l) => l.level)).toEqual([1, 2, 3, 4]);
    expect(reduced.json.levels).toEqual(plain.json.levels);
    expect(reduced.json.crossAttentionBlocks).toBe(plain.json.crossAttentionBlocks);
    expect(plain.json.builtIn).toBeUndefined();
    const blocks = (level: number) =>
      plain.json.levels.find((l) => l.level === level)?.selfAttentionBlocks;
    expect(reduced.json.builtIn).toMatchObject({
      description:
        "ToDo nearest factor 4 at level 1, 2 at level 2; keys/values; none once t/1000 <= 0",
      settings: { method: "todo", factor: "4", factor_level2: "2", mode: "nearest", target: "kv" },
      reducedBlocksPerLevel: { 1: blocks(1), 2: blocks(2) },
    });
    expect(reduced.text).toMatch(/token reduction built in: ToDo nearest factor 4 at level 1/);
    expect(reduced.text).toMatch(/settings: method=todo factor=4 factor_level2=2/);
  });
});
