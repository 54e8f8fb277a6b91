import { describe, expect, test } from "vitest";
import { readConfigFile } from "../../src/configs/config-json.js";
import {
  createScheduler,
  listSchedulerClasses,
  listSchedulers,
} from "../../src/schedulers/registry.js";
import { fixturePath } from "../fixtures.js";

describe("createScheduler", () => {
  test("loads a model folder's config as is", () => {
    const config = readConfigFile(
      fixturePath("pipelines", "sd15-tiny", "scheduler", "scheduler_config.json"),
    );
    expect(config._class_name).toBe("PNDMScheduler");
    const scheduler = createScheduler(String(config._class_name), config);
    expect(scheduler.name).toBe("PNDMScheduler");
    expect(scheduler.config.beta_schedule).toBe("scaled_linear");
    expect(scheduler.config.steps_offset).toBe(1);
  });

  test("knows every sampler of the issue by class name", () => {
    expect(listSchedulerClasses().sort()).toEqual(
      [
        "DDIMScheduler",
        "DDPMScheduler",
        "DEISMultistepScheduler",
        "DPMSolverMultistepScheduler",
        "DPMSolverSinglestepScheduler",
        "EulerAncestralDiscreteScheduler",
        "EulerDiscreteScheduler",
        "HeunDiscreteScheduler",
        "KDPM2AncestralDiscreteScheduler",
        "KDPM2DiscreteScheduler",
        "LCMScheduler",
        "LMSDiscreteScheduler",
        "PNDMScheduler",
        "TCDScheduler",
        "UniPCMultistepScheduler",
      ].sort(),
    );
  });

  test.each([
    ["Euler a", "EulerAncestralDiscreteScheduler", {}],
    ["euler-a", "EulerAncestralDiscreteScheduler", {}],
    [
      "DPM++ 2M Karras",
      "DPMSolverMultistepScheduler",
      { use_karras_sigmas: true, algorithm_type: "dpmsolver++" },
    ],
    ["dpmpp-2m-karras", "DPMSolverMultistepScheduler", { use_karras_sigmas: true }],
    [
      "DPM++ 2M SDE Karras",
      "DPMSolverMultistepScheduler",
      { algorithm_type: "sde-dpmsolver++", use_karras_sigmas: true },
    ],
    ["DPM++ 3M", "DPMSolverMultistepScheduler", { solver_order: 3 }],
    ["DPM++ 2S", "DPMSolverSinglestepScheduler", { solver_order: 2 }],
    ["DPM2 a", "KDPM2AncestralDiscreteScheduler", {}],
    ["PLMS", "PNDMScheduler", { skip_prk_steps: true }],
    ["unipcmultistepscheduler", "UniPCMultistepScheduler", {}],
  ])("UI name %s is %s with its options", (name, className, options) => {
    const scheduler = createScheduler(name);
    expect(scheduler.name).toBe(className);
    for (const [key, value] of Object.entries(options)) expect(scheduler.config[key]).toBe(value);
  });

  test("every listed name creates a sampler", () => {
    for (const name of listSchedulers()) expect(createScheduler(name).name).toMatch(/Scheduler$/);
  });

  test("an unknown name lists the valid ones", () => {
    expect(() => createScheduler("Euler b")).toThrow(
      /unknown scheduler "Euler b"; valid names: DDIMScheduler, .*Euler a/,
    );
  });

  test("overrides go on top of a model config, whose foreign and default-marked keys are dropped", () => {
    const model = {
      _class_name: "PNDMScheduler",
      beta_schedule: "scaled_linear",
      beta_start: 0.00085,
      beta_end: 0.012,
      skip_prk_steps: true,
      timestep_spacing: "trailing",
      steps_offset: 1,
      _use_default_values: ["timestep_spacing"],
    };
    const scheduler = createScheduler("Euler", model, { prediction_type: "v_prediction" });
    expect(scheduler.config.prediction_type).toBe("v_prediction");
    expect(scheduler.config.beta_schedule).toBe("scaled_linear");
    // Marked as a default of the PNDM config: Euler's own default applies.
    expect(scheduler.config.timestep_spacing).toBe("linspace");
    expect("skip_prk_steps" in scheduler.config).toBe(false);
    // The UI name's options give way to explicit overrides.
    expect(
      createScheduler("DPM++ 2M Karras", model, { use_karras_sigmas: false }).config
        .use_karras_sigmas,
    ).toBe(false);
  });

  test("a bad override or value is a clear error", () => {
    expect(() => createScheduler("DDIM", {}, { use_karras_sigmas: true })).toThrow(
      /DDIMScheduler has no option "use_karras_sigmas"; its options are: num_train_timesteps/,
    );
    expect(() => createScheduler("Euler", { beta_schedule: "cubic" })).toThrow(
      /EulerDiscreteScheduler: config beta_schedule="cubic" must be one of "linear", "scaled_linear", "squaredcos_cap_v2"/,
    );
    expect(() => createScheduler("Euler", {}, { prediction_type: "flow" })).toThrow(
      /prediction_type="flow" must be one of/,
    );
    expect(() => createScheduler("DPM++ 2M", {}, { solver_order: 4 })).toThrow(
      /solver_order=4 must be between 1 and 3/,
    );
  });

  test("config combinations a sampler cannot do are clear errors", () => {
    expect(() => createScheduler("PNDM", {}, { skip_prk_steps: false })).toThrow(
      /Runge-Kutta warm-up is not implemented/,
    );
    expect(() => createScheduler("Euler", { use_exponential_sigmas: true })).toThrow(
      /only the Karras sigma ramp/,
    );
    expect(() => createScheduler("DPM++ 2M", {}, { algorithm_type: "dpmsolver" })).toThrow(
      /algorithm_type dpmsolver cannot step to sigma 0; set final_sigmas_type to "sigma_min"/,
    );
    expect(() => createScheduler("DPM++ 2M SDE", {}, { solver_order: 3 })).toThrow(
      /supports solver_order 1 or 2/,
    );
    expect(() => createScheduler("TCD", {}, { eta: 1.5 })).toThrow(
      /eta \(gamma\) must be in \[0, 1\]/,
    );
    expect(() => createScheduler("Euler", { trained_betas: [0.1, 0.2] }).setTimesteps(4)).toThrow(
      /trained_betas has 2 values but num_train_timesteps is 1000/,
    );
    const lcm = createScheduler("LCM");
    expect(() => lcm.setTimesteps(51)).toThrow(
      /51 steps is more than the 50 original_inference_steps/,
    );
  });

  test("img2img strength outside (0, 1] or leaving no step is a clear error", () => {
    const scheduler = createScheduler("Euler");
    scheduler.setTimesteps(4);
    expect(() => scheduler.timestepsForStrength(0)).toThrow(/strength must be in \(0, 1\], got 0/);
    expect(() => scheduler.timestepsForStrength(0.1)).toThrow(/leaves no step to run/);
    expect(() => scheduler.setBeginIndex(9)).toThrow(
      /begin index must be an integer in 0..3, got 9/,
    );
    expect(scheduler.timestepsForStrength(1)).toEqual(scheduler.timesteps);
  });
});
