import { describe, expect, it } from "vitest";
import { parseReductionFlags } from "../../src/cli/reduction-flags.js";
import {
  DEFAULT_REDUCTION_OPTIONS,
  describeReduction,
  parseReductionOptions,
  reductionFromMetadata,
  reductionMetadata,
  resolveAutoFactor,
  resolveReduction,
  settingsFromReferenceArgs,
  validateReductionOptions,
} from "../../src/reduce/options.js";
import { timestepCutoff } from "../../src/reduce/timestep.js";

describe("reduction options", () => {
  it("fills in the defaults", () => {
    expect(parseReductionOptions()).toEqual(DEFAULT_REDUCTION_OPTIONS);
    expect(DEFAULT_REDUCTION_OPTIONS.factor).toBe("auto");
    expect(DEFAULT_REDUCTION_OPTIONS.mode).toBe("nearest");
  });

  it("maps the CLI flags", () => {
    const options = parseReductionFlags({
      todo: "3",
      todoLevel2: "2",
      todoMode: "avg",
      mergeTarget: "all",
      tomeStride: "3x2",
      tomeRandom: "7",
      todoStop: "0.2",
      todoSwitch: "0.5",
      todoSecondary: "tome",
    });
    expect(options).toMatchObject({
      method: "todo",
      factor: 3,
      factorLevel2: 2,
      mode: "avg",
      target: "all",
      strideX: 3,
      strideY: 2,
      random: true,
      seed: 7,
      stopThreshold: 0.2,
      switchThreshold: 0.5,
      secondary: "tome",
    });
    expect(parseReductionFlags({ tome: "0.6", tomeLevel2: "0.3", tomeRandom: true })).toMatchObject(
      { method: "tome", ratio: 0.6, ratioLevel2: 0.3, random: true, seed: 0 },
    );
    expect(parseReductionFlags({ tome: "0.5", tomeStride: "4" })).toMatchObject({
      strideX: 4,
      strideY: 4,
    });
  });

  it.each([
    [
      { todo: "0" },
      /--todo: the factor must be a whole number >= 1 or auto \(1 turns ToDo off\); got "0"/,
    ],
    [{ todo: "1.5" }, /--todo: the factor must be a whole number/],
    [{ todo: "two" }, /--todo: the factor must be a number; got "two"/],
    [{ todoLevel2: "-2" }, /--todo-level2: the factor must be a whole number/],
    [
      { todoMode: "lanczos" },
      /--todo-mode: unknown mode; use one of nearest, nearest-exact, bilinear, bicubic, area, avg, max; got "lanczos"/,
    ],
    [{ tome: "1" }, /--tome: the ratio must be in \[0, 1\) \(0 turns ToMe off\); got "1"/],
    [{ tome: "-0.1" }, /--tome: the ratio must be in \[0, 1\)/],
    [{ tomeLevel2: "1.2" }, /--tome-level2: the ratio must be in \[0, 1\)/],
    [{ tomeStride: "1x1" }, /--tome-stride: a 1x1 stride makes every token a destination/],
    [{ tomeStride: "2x" }, /--tome-stride: the stride is SXxSY/],
    [
      { tomeStride: "0x2" },
      /--tome-stride: the stride must be a whole number from 1 to 64; got "0"/,
    ],
    [{ mergeTarget: "queries" }, /--merge-target: unknown target; use kv or all/],
    [{ todoStop: "1.5" }, /--todo-stop: the threshold is a fraction t\/1000 in \[0, 1\]/],
    [{ todoSwitch: "x" }, /--todo-switch: the threshold must be a number/],
    [{ todoSecondary: "merge" }, /--todo-secondary: unknown method; use tome, todo or none/],
    [{ tomeRandom: "-1" }, /--tome-random: the seed must be a whole number/],
  ])("rejects %j with a clear one-line error", (flags, message) => {
    let error: Error | undefined;
    try {
      parseReductionFlags(flags);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(message);
    expect(error?.message).not.toContain("\n");
  });

  it("expresses ToDo first, then ToMe with ratio r after the switch, and ToMe then ToDo", () => {
    expect(
      parseReductionFlags({ todo: "2", todoSwitch: "0.8", todoSecondary: "tome", tome: "0.5" }),
    ).toMatchObject({
      method: "todo",
      factor: 2,
      switchThreshold: 0.8,
      secondary: "tome",
      ratio: 0.5,
    });
    expect(
      parseReductionFlags({ tome: "0.4", todoSwitch: "0.5", todoSecondary: "todo", todo: "3" }),
    ).toMatchObject({ method: "tome", ratio: 0.4, secondary: "todo", factor: 3 });
    expect(parseReductionFlags({ tome: "0", tomeLevel2: "0.5" })).toMatchObject({
      method: "tome",
      ratio: 0,
      ratioLevel2: 0.5,
    });
  });

  it.each([
    [{ todo: "2", tome: "0.5" }, /--todo 2 and --tome 0\.5 both choose the method/],
    [{ tomeLevel2: "0.5" }, /--tome-level2: it is a ToMe setting, but ToMe is not in use/],
    [{ tomeRandom: true }, /--tome-random: it is a ToMe setting/],
    [{ tomeStride: "4" }, /--tome-stride: it is a ToMe setting/],
    [{ tome: "0.5", todoMode: "avg" }, /--todo-mode: it is a ToDo setting, but ToMe is the method/],
    [{ todoSecondary: "tome" }, /--todo-secondary: the secondary method starts at the switch/],
    [
      { todoSwitch: "0.3", todoStop: "0.5" },
      /--todo-switch: the switch at 0\.3 comes at or after the stop/,
    ],
    [
      { todoSwitch: "0.5", todoSecondary: "todo" },
      /--todo-switch: the method after the switch is the method before it \(todo\)/,
    ],
  ])("refuses flags that would be ignored: %j", (flags, message) => {
    expect(() => parseReductionFlags(flags)).toThrow(message);
  });

  it("validates options built in code", () => {
    // The library names the option; the CLI's parseReductionFlags names the flag.
    expect(() => validateReductionOptions({ ...DEFAULT_REDUCTION_OPTIONS, factor: 0 })).toThrow(
      /^factor: the factor must be/,
    );
    expect(() => parseReductionOptions({ mode: "lanczos" })).toThrow(/^mode: unknown mode/);
    expect(() =>
      validateReductionOptions({ ...DEFAULT_REDUCTION_OPTIONS, mode: "cubic" as "bicubic" }),
    ).toThrow(/unknown mode/);
  });
});

describe("auto factor", () => {
  it.each([
    [512, 512, "sd1", 1, 1],
    [768, 768, "sd2", 1, 1],
    [1024, 1024, "sd1", 2, 1],
    [1024, 768, "sd1", 2, 1],
    [1152, 896, "sd1", 3, 1],
    [1536, 1536, "sd1", 3, 1],
    [2048, 2048, "sd1", 4, 2],
    [1024, 1024, "sdxl", 2, 2],
    [768, 768, "sdxl", 1, 1],
    [2048, 1024, "sdxl", 4, 4],
  ] as const)("%ix%i %s -> %i at level 1, %i at level 2", (width, height, arch, f1, f2) => {
    expect(resolveAutoFactor(width, height, arch)).toEqual({ factor: f1, factorLevel2: f2 });
  });

  it("resolves auto with the image size and refuses it without", () => {
    const options = parseReductionOptions();
    expect(
      resolveReduction(options, { architecture: "sd1", width: 1024, height: 1024 }),
    ).toMatchObject({
      factor: 2,
      factorLevel2: 1,
      ratioLevel2: 0,
    });
    expect(() => resolveReduction(options, { architecture: "sd1" })).toThrow(
      /^factor auto needs the image size; give a factor or the width and height$/,
    );
  });

  it("gives an explicit factor to level 2 on SDXL, whose level 1 has no attention", () => {
    const options = parseReductionOptions({ factor: 2 });
    expect(resolveReduction(options, { architecture: "sdxl" })).toMatchObject({
      factor: 2,
      factorLevel2: 2,
    });
    expect(resolveReduction(options, { architecture: "sd1" })).toMatchObject({
      factor: 2,
      factorLevel2: 1,
    });
    const tome = parseReductionOptions({ method: "tome", ratio: 0.4 });
    expect(resolveReduction(tome, { architecture: "sdxl" }).ratioLevel2).toBe(0.4);
  });

  it("refuses reductions that do not fit the token grid of the image", () => {
    const big = parseReductionOptions({ factor: 16 });
    expect(() => resolveReduction(big, { architecture: "sd1", width: 64, height: 64 })).toThrow(
      /^factor: factor 16 does not fit the 8x8 token grid at level 1 \(image 64x64\)/,
    );
    const stride = parseReductionOptions({
      method: "tome",
      factor: 1,
      stride: "8x2",
      ratioLevel2: 0.5,
    });
    expect(() => resolveReduction(stride, { architecture: "sdxl", width: 96, height: 96 })).toThrow(
      /^stride: 8x2 does not fit the 6x6 token grid at level 2 \(image 96x96\)/,
    );
    expect(
      resolveReduction(stride, { architecture: "sdxl", width: 128, height: 128 }).strideX,
    ).toBe(8);
  });
});

describe("description and metadata", () => {
  const settings = resolveReduction(
    parseReductionOptions({
      factor: 2,
      mode: "bilinear",
      stopThreshold: 0.1,
      switchThreshold: 0.3,
    }),
    { architecture: "sd1" },
  );

  it("describes the settings in one line", () => {
    expect(describeReduction(settings)).toBe(
      "ToDo bilinear factor 2 at level 1; keys/values; none once t/1000 <= 0.1; ToMe once t/1000 <= 0.3 (ToMe ratio 0.5 at level 1, stride 2x2 top-left)",
    );
    expect(describeReduction(undefined)).toBe("token reduction off");
    expect(
      describeReduction(
        resolveReduction(parseReductionOptions({ factor: 1 }), { architecture: "sd1" }),
      ),
    ).toBe("token reduction off");
    expect(describeReduction(parseReductionOptions())).toContain("factor auto");
  });

  it("round-trips through metadata_props", () => {
    const props = reductionMetadata(settings);
    expect(props["todo_sd.reduction"]).toBe(describeReduction(settings));
    expect(props["todo_sd.reduction.factor"]).toBe("2");
    expect(props["todo_sd.reduction.stride"]).toBe("2x2");
    expect(reductionFromMetadata(props)).toEqual(settings);
    expect(reductionFromMetadata({ other: "x" })).toBeUndefined();
    const auto = parseReductionOptions();
    expect(reductionFromMetadata(reductionMetadata(auto))).toEqual(auto);
    expect(() => reductionFromMetadata({ ...props, "todo_sd.reduction.mode": "fancy" })).toThrow(
      /unknown mode/,
    );
  });

  it("reads the reference's argument names", () => {
    expect(
      settingsFromReferenceArgs({
        merge_method: "similarity",
        merge_tokens: "keys/values",
        downsample_method: "max_pool",
        sx: 3,
        sy: 1,
        use_rand: false,
        secondary_merge_method: "downsample",
      }),
    ).toMatchObject({
      method: "tome",
      target: "kv",
      mode: "max",
      strideX: 3,
      strideY: 1,
      secondary: "todo",
    });
  });
});

describe("timestep thresholds", () => {
  it.each([0, 0.2, 0.3, 0.5, 0.7, 0.8, 0.123456, 0.999, 1])(
    "t > cutoff(%f) in float32 is the reference's t/1000 > threshold",
    (threshold) => {
      const cutoff = timestepCutoff(threshold);
      expect(Math.fround(cutoff)).toBe(cutoff);
      const bits = new Float32Array([cutoff]);
      const word = new Int32Array(bits.buffer);
      const base = word[0];
      for (let d = -3; d <= 3; d++) {
        word[0] = base + d;
        const t = bits[0];
        if (t < 0) continue;
        expect(t > cutoff, `t=${t}`).toBe(t / 1000 > threshold);
      }
    },
  );

  it("puts whole timesteps on the reference's side", () => {
    expect(timestepCutoff(0.8)).toBe(800);
    expect(timestepCutoff(0)).toBe(0);
    expect(timestepCutoff(0.3)).toBe(300);
  });
});
