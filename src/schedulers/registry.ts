/**
 * The samplers by name: the diffusers class names that a model's `scheduler_config.json`
 * carries in `_class_name` (so a model's own config loads as is), and the names people pick
 * samplers by in UIs, each a class plus a few options.
 *
 * | UI name | class | options |
 * | --- | --- | --- |
 * | DDIM | DDIMScheduler | |
 * | DDPM | DDPMScheduler | |
 * | PNDM, PLMS | PNDMScheduler | skip_prk_steps |
 * | Euler | EulerDiscreteScheduler | |
 * | Euler Karras | EulerDiscreteScheduler | use_karras_sigmas |
 * | Euler a | EulerAncestralDiscreteScheduler | |
 * | Heun, Heun Karras | HeunDiscreteScheduler | (use_karras_sigmas) |
 * | LMS, LMS Karras | LMSDiscreteScheduler | (use_karras_sigmas) |
 * | DPM2, DPM2 Karras | KDPM2DiscreteScheduler | (use_karras_sigmas) |
 * | DPM2 a, DPM2 a Karras | KDPM2AncestralDiscreteScheduler | (use_karras_sigmas) |
 * | DPM++ 2M, DPM++ 2M Karras | DPMSolverMultistepScheduler | dpmsolver++, order 2 (use_karras_sigmas) |
 * | DPM++ 2M SDE, DPM++ 2M SDE Karras | DPMSolverMultistepScheduler | sde-dpmsolver++, order 2 (use_karras_sigmas) |
 * | DPM++ 3M, DPM++ 3M Karras | DPMSolverMultistepScheduler | dpmsolver++, order 3 (use_karras_sigmas) |
 * | DPM++ 2S, DPM++ 2S Karras | DPMSolverSinglestepScheduler | dpmsolver++, order 2 (use_karras_sigmas) |
 * | UniPC | UniPCMultistepScheduler | |
 * | DEIS | DEISMultistepScheduler | |
 * | LCM | LCMScheduler | |
 * | TCD | TCDScheduler | |
 *
 * Names match without regard to case; a kebab-case form also works (`euler-a`,
 * `dpm++-2m-karras`, `dpmpp-2m-karras`).
 */
import {
  type ConfigOf,
  type FieldSpecs,
  resolveConfig,
  type SchedulerConfigJson,
} from "./config.js";
import { DDIM_FIELDS, DdimScheduler } from "./ddim.js";
import { DDPM_FIELDS, DdpmScheduler } from "./ddpm.js";
import { DEIS_FIELDS, DeisScheduler } from "./deis.js";
import {
  DPM_SOLVER_MULTISTEP_FIELDS,
  DpmSolverMultistepScheduler,
} from "./dpm-solver-multistep.js";
import {
  DPM_SOLVER_SINGLESTEP_FIELDS,
  DpmSolverSinglestepScheduler,
} from "./dpm-solver-singlestep.js";
import { DPM2_FIELDS, Dpm2Scheduler } from "./dpm2.js";
import { DPM2_ANCESTRAL_FIELDS, Dpm2AncestralScheduler } from "./dpm2-ancestral.js";
import { EULER_FIELDS, EulerScheduler } from "./euler.js";
import { EULER_ANCESTRAL_FIELDS, EulerAncestralScheduler } from "./euler-ancestral.js";
import { HEUN_FIELDS, HeunScheduler } from "./heun.js";
import { LCM_FIELDS, LcmScheduler } from "./lcm.js";
import { LMS_FIELDS, LmsScheduler } from "./lms.js";
import { PNDM_FIELDS, PndmScheduler } from "./pndm.js";
import { TCD_FIELDS, TcdScheduler } from "./tcd.js";
import type { Scheduler } from "./types.js";
import { UNIPC_FIELDS, UniPcScheduler } from "./unipc.js";

interface SamplerEntry {
  readonly create: (
    className: string,
    config: SchedulerConfigJson,
    overrides: SchedulerConfigJson,
  ) => Scheduler;
}

function sampler<S extends FieldSpecs>(
  fields: S,
  Sampler: new (name: string, config: ConfigOf<S>) => Scheduler,
): SamplerEntry {
  return {
    create: (className, config, overrides) =>
      new Sampler(className, resolveConfig(className, fields, config, overrides)),
  };
}

const SAMPLERS: Readonly<Record<string, SamplerEntry>> = {
  DDIMScheduler: sampler(DDIM_FIELDS, DdimScheduler),
  DDPMScheduler: sampler(DDPM_FIELDS, DdpmScheduler),
  PNDMScheduler: sampler(PNDM_FIELDS, PndmScheduler),
  EulerDiscreteScheduler: sampler(EULER_FIELDS, EulerScheduler),
  EulerAncestralDiscreteScheduler: sampler(EULER_ANCESTRAL_FIELDS, EulerAncestralScheduler),
  HeunDiscreteScheduler: sampler(HEUN_FIELDS, HeunScheduler),
  LMSDiscreteScheduler: sampler(LMS_FIELDS, LmsScheduler),
  KDPM2DiscreteScheduler: sampler(DPM2_FIELDS, Dpm2Scheduler),
  KDPM2AncestralDiscreteScheduler: sampler(DPM2_ANCESTRAL_FIELDS, Dpm2AncestralScheduler),
  DPMSolverMultistepScheduler: sampler(DPM_SOLVER_MULTISTEP_FIELDS, DpmSolverMultistepScheduler),
  DPMSolverSinglestepScheduler: sampler(DPM_SOLVER_SINGLESTEP_FIELDS, DpmSolverSinglestepScheduler),
  UniPCMultistepScheduler: sampler(UNIPC_FIELDS, UniPcScheduler),
  DEISMultistepScheduler: sampler(DEIS_FIELDS, DeisScheduler),
  LCMScheduler: sampler(LCM_FIELDS, LcmScheduler),
  TCDScheduler: sampler(TCD_FIELDS, TcdScheduler),
};

interface UiName {
  readonly className: string;
  readonly options: SchedulerConfigJson;
}

const KARRAS = { use_karras_sigmas: true };

const DPMPP = { algorithm_type: "dpmsolver++", solver_order: 2 };
const DPMPP_SDE = { algorithm_type: "sde-dpmsolver++", solver_order: 2 };
const DPMPP_3M = { algorithm_type: "dpmsolver++", solver_order: 3 };

const UI_NAMES: Readonly<Record<string, UiName>> = {
  DDIM: { className: "DDIMScheduler", options: {} },
  DDPM: { className: "DDPMScheduler", options: {} },
  PNDM: { className: "PNDMScheduler", options: { skip_prk_steps: true } },
  PLMS: { className: "PNDMScheduler", options: { skip_prk_steps: true } },
  Euler: { className: "EulerDiscreteScheduler", options: {} },
  "Euler Karras": { className: "EulerDiscreteScheduler", options: KARRAS },
  "Euler a": { className: "EulerAncestralDiscreteScheduler", options: {} },
  Heun: { className: "HeunDiscreteScheduler", options: {} },
  "Heun Karras": { className: "HeunDiscreteScheduler", options: KARRAS },
  LMS: { className: "LMSDiscreteScheduler", options: {} },
  "LMS Karras": { className: "LMSDiscreteScheduler", options: KARRAS },
  DPM2: { className: "KDPM2DiscreteScheduler", options: {} },
  "DPM2 Karras": { className: "KDPM2DiscreteScheduler", options: KARRAS },
  "DPM2 a": { className: "KDPM2AncestralDiscreteScheduler", options: {} },
  "DPM2 a Karras": { className: "KDPM2AncestralDiscreteScheduler", options: KARRAS },
  "DPM++ 2M": { className: "DPMSolverMultistepScheduler", options: DPMPP },
  "DPM++ 2M Karras": { className: "DPMSolverMultistepScheduler", options: { ...DPMPP, ...KARRAS } },
  "DPM++ 2M SDE": { className: "DPMSolverMultistepScheduler", options: DPMPP_SDE },
  "DPM++ 2M SDE Karras": {
    className: "DPMSolverMultistepScheduler",
    options: { ...DPMPP_SDE, ...KARRAS },
  },
  "DPM++ 3M": { className: "DPMSolverMultistepScheduler", options: DPMPP_3M },
  "DPM++ 3M Karras": {
    className: "DPMSolverMultistepScheduler",
    options: { ...DPMPP_3M, ...KARRAS },
  },
  "DPM++ 2S": { className: "DPMSolverSinglestepScheduler", options: DPMPP },
  "DPM++ 2S Karras": {
    className: "DPMSolverSinglestepScheduler",
    options: { ...DPMPP, ...KARRAS },
  },
  UniPC: { className: "UniPCMultistepScheduler", options: {} },
  DEIS: { className: "DEISMultistepScheduler", options: {} },
  LCM: { className: "LCMScheduler", options: {} },
  TCD: { className: "TCDScheduler", options: {} },
};

function normalize(name: string): string {
  return name
    .trim()
    .toLowerCase()
    .replace(/[\s_-]+/g, " ")
    .replace(/\+\+/g, "pp");
}

const LOOKUP: ReadonlyMap<string, UiName> = new Map([
  ...Object.keys(SAMPLERS).map((className): [string, UiName] => [
    normalize(className),
    { className, options: {} },
  ]),
  ...Object.entries(UI_NAMES).map(([name, entry]): [string, UiName] => [normalize(name), entry]),
]);

/** The registered sampler classes (diffusers class names). */
export function listSchedulerClasses(): string[] {
  return Object.keys(SAMPLERS);
}

/** Every accepted name: class names first, then UI names. */
export function listSchedulers(): string[] {
  return [...Object.keys(SAMPLERS), ...Object.keys(UI_NAMES)];
}

/**
 * A sampler by class or UI name, configured from a model's scheduler config (keys it does not
 * have are ignored) with the UI name's options and then `overrides` on top.
 */
export function createScheduler(
  nameOrClass: string,
  config: SchedulerConfigJson = {},
  overrides: SchedulerConfigJson = {},
): Scheduler {
  const found = LOOKUP.get(normalize(nameOrClass));
  if (found === undefined) {
    throw new Error(
      `unknown scheduler "${nameOrClass}"; valid names: ${listSchedulers().join(", ")}`,
    );
  }
  return SAMPLERS[found.className].create(found.className, config, {
    ...found.options,
    ...overrides,
  });
}
