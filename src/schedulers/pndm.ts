/**
 * PNDM, as PLMS: Liu et al., "Pseudo Numerical Methods for Diffusion Models on Manifolds"
 * (ICLR 2022). The transfer of eq. 9 (a DDIM step) is driven by a linear multistep (Adams-
 * Bashforth) combination of the last noise estimates, eq. 12. With `skip_prk_steps` the first
 * step is a pseudo improved Euler step instead of the paper's Runge-Kutta warm-up: an Euler
 * transfer, a model call at its end, and the transfer redone with the mean of both estimates.
 * The second timestep is therefore listed twice.
 */
import type { StepInput } from "./base.js";
import { booleanField, type ConfigOf, fixedField, scheduleFields } from "./config.js";
import { DDPM_DEFAULTS, DiscreteScheduler, ddimUpdate } from "./discrete-base.js";
import { combine, type Tensor } from "./tensor-ops.js";

export const PNDM_FIELDS = {
  ...scheduleFields(DDPM_DEFAULTS),
  skip_prk_steps: fixedField(
    true,
    "the Runge-Kutta warm-up is not implemented; use skip_prk_steps: true (PLMS)",
  ),
  set_alpha_to_one: booleanField(false),
};
export type PndmConfig = ConfigOf<typeof PNDM_FIELDS>;

/** Adams-Bashforth weights for 1-4 past values, newest first. */
const ADAMS_BASHFORTH: readonly (readonly number[])[] = [
  [1],
  [3 / 2, -1 / 2],
  [23 / 12, -16 / 12, 5 / 12],
  [55 / 24, -59 / 24, 37 / 24, -9 / 24],
];

export class PndmScheduler extends DiscreteScheduler<PndmConfig> {
  /** The distinct timesteps, descending. */
  private levels: number[] = [];
  /** Model outputs of the multistep history, newest last. */
  private outputs: Float32Array[] = [];
  private calls = 0;
  /** The first step's start, kept for the pseudo improved Euler redo. */
  private firstStep:
    | { sample: Float32Array; output: Float32Array; from: number; to: number }
    | undefined;

  protected override computeTimesteps(steps: number): void {
    this.levels = this.spacedTimesteps(steps);
    const [first, ...rest] = this.levels;
    this.timesteps = rest.length > 0 ? [first, rest[0], ...rest] : [first];
  }

  protected override resetState(): void {
    this.outputs = [];
    this.calls = 0;
    this.firstStep = undefined;
  }

  /** The next lower timestep of the schedule, or -1 past the end. */
  private below(timestep: number): number {
    return this.levels.find((t) => t < timestep) ?? -1;
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, timestep, sample } = input;
    const call = this.calls++;
    if (call === 0) {
      const to = this.below(timestep);
      this.firstStep = { sample, output: modelOutput, from: timestep, to };
      this.outputs.push(modelOutput);
      return this.transfer(sample, modelOutput, timestep, to);
    }
    if (call === 1 && this.firstStep !== undefined) {
      // Redo the first step from its start with the mean of both estimates.
      const { sample: start, output, from, to } = this.firstStep;
      this.firstStep = undefined;
      return this.transfer(
        start,
        combine([
          [0.5, output],
          [0.5, modelOutput],
        ]),
        from,
        to,
      );
    }
    this.outputs.push(modelOutput);
    if (this.outputs.length > 4) this.outputs.shift();
    const weights = ADAMS_BASHFORTH[this.outputs.length - 1];
    const combined = combine(
      weights.map((w, k): [number, Tensor] => [w, this.outputs[this.outputs.length - 1 - k]]),
    );
    return this.transfer(sample, combined, timestep, this.below(timestep));
  }

  /** Eq. 9: the sample at `to` from the sample at `from` and a model output there. */
  private transfer(sample: Tensor, modelOutput: Tensor, from: number, to: number): Float64Array {
    const alphaBar = this.schedule.alphaCumprod(from);
    const { x0, eps } = this.estimates(modelOutput, sample, alphaBar, []);
    return ddimUpdate(x0, eps, this.alphaBarAt(to));
  }
}
