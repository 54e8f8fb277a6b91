// Component models built into files for another runtime: the manifest, the cache files, one
// build per distinct graph, and scheduler configs with non-finite numbers.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openComponentModels } from "../../src/pipelines/component-models.js";
import { openSource } from "../../src/pipelines/load.js";
import { parseReductionOptions, resolveReduction } from "../../src/reduce/options.js";
import { createScheduler } from "../../src/schedulers/registry.js";
import { fixturePath } from "../fixtures.js";

const work = mkdtempSync(join(tmpdir(), "todo-sd-components-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const tiny = fixturePath("pipelines", "sd15-tiny");

describe("openComponentModels", () => {
  it("describes the model and builds each graph once into the cache", async () => {
    const built: string[] = [];
    const models = await openComponentModels(tiny, {
      backend: "wasm",
      cacheDir: join(work, "cache"),
      onBuild: (component) => built.push(component),
    });
    try {
      expect(models.manifest).toMatchObject({
        family: "sd1",
        backend: "wasm",
        dtype: "float32",
        latentChannels: 4,
        vaeScale: 8,
        defaultSize: 128,
        scalingFactor: 0.18215,
        shiftFactor: 0,
        forceZerosForEmptyPrompt: false,
      });
      expect(models.manifest.textEncoders).toEqual([{ hiddenSize: 16, layers: 3 }]);
      expect(models.manifest.schedulerConfig._class_name).toBe("PNDMScheduler");
      expect(models.tokenizers).toEqual([{ dir: join(tiny, "tokenizer") }]);

      const [encoder, again] = await Promise.all([
        models.textEncoder(0, {}),
        models.textEncoder(0, {}),
      ]);
      expect(again).toEqual(encoder);
      expect(existsSync(encoder.modelPath)).toBe(true);
      expect(encoder.externalDataPath).toBeUndefined();
      expect(encoder.key).toMatch(/^[0-9a-f]{32}$/);
      const skip = await models.textEncoder(0, { hiddenStateFromEnd: 2, finalLayerNorm: true });
      expect(skip.key).not.toBe(encoder.key);

      const settings = resolveReduction(parseReductionOptions({ factor: 2 }), {
        architecture: "sd1",
        width: 128,
        height: 128,
      });
      const baseline = await models.unet(undefined);
      const accelerated = await models.unet(settings);
      expect(accelerated.key).not.toBe(baseline.key);
      expect((await models.vaeDecoder()).key).not.toBe((await models.vaeEncoder()).key);
      expect(built.sort()).toEqual([
        "text_encoder",
        "text_encoder",
        "unet",
        "unet",
        "vae_decoder",
        "vae_encoder",
      ]);
      await expect(models.textEncoder(1, {})).rejects.toThrow(
        "text encoder 1 does not exist; the model has 1",
      );
    } finally {
      models.close();
    }
    // A second opening finds every file in the cache.
    const reopened = await openComponentModels(tiny, {
      backend: "wasm",
      cacheDir: join(work, "cache"),
      onBuild: (component) => built.push(`again ${component}`),
    });
    await reopened.unet(undefined);
    reopened.close();
    expect(built.filter((b) => b.startsWith("again"))).toEqual([]);
  });

  it("writes non-finite scheduler numbers as strings the samplers accept", async () => {
    const folder = join(work, "dpm");
    mkdirSync(join(folder, "scheduler"), { recursive: true });
    for (const part of ["model_index.json", "unet", "vae", "text_encoder", "tokenizer"])
      symlinkSync(join(tiny, part), join(folder, part));
    writeFileSync(
      join(folder, "scheduler", "scheduler_config.json"),
      '{"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "lambda_min_clipped": -Infinity}',
    );
    const models = await openComponentModels(folder, { backend: "webgpu", cacheDir: work });
    models.close();
    expect(models.manifest.dtype).toBe("float16");
    const config = JSON.parse(JSON.stringify(models.manifest.schedulerConfig));
    expect(config.lambda_min_clipped).toBe("-Infinity");
    expect(() => createScheduler("DPM++ 2M", config).setTimesteps(4)).not.toThrow();
  });

  it("refuses what it cannot build", async () => {
    await expect(
      openComponentModels(fixturePath("onnx", "sd15-tiny"), { backend: "wasm", cacheDir: work }),
    ).rejects.toThrow("ONNX export folders are not supported yet");
    await expect(
      openComponentModels(join(work, "missing"), { backend: "wasm", cacheDir: work }),
    ).rejects.toThrow("no such file or folder");
  });

  it("opens a source the server opened already with files of its own, not downloading it again", async () => {
    const opened = await openSource(tiny);
    if (opened.kind === "onnx-folder") throw new Error("the fixture is a diffusers folder");
    // As a Hub id opens: the id, and the folder it was downloaded to. Opening the id itself
    // would ask the Hub (and fail: no such model), so this passes only when the folder is used.
    const fromHub = { ...opened, kind: "hub" as const, source: "no-such-org/no-such-model" };
    const models = await openComponentModels(fromHub, { backend: "wasm", cacheDir: work });
    // Closing the component models leaves the first opening's files readable.
    models.close();
    expect(models.manifest).toMatchObject({ family: "sd1", latentChannels: 4 });
    const unet = opened.files.weights.unet;
    if (!unet) throw new Error("the fixture has a UNet");
    expect(unet.readFloat32(unet.keys()[0]).length).toBeGreaterThan(0);
    opened.files.close();
  });
});
