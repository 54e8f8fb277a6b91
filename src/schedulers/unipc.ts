/**
 * UniPC: Zhao et al., "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
 * Diffusion Models" (NeurIPS 2023). Each step first corrects the current sample with the model
 * output just computed (UniC, Algorithm 2), then predicts the next one from it (UniP,
 * Algorithm 1), both with the B(h) weights of sec. 3.2 (bh1: B(h) = h, bh2: B(h) = e^h - 1).
 */
import type { StepInput } from "./base.js";
import { booleanField, type ConfigOf, choiceField, fixedField, numberListField } from "./config.js";
import {
  finalSigmaField,
  type NoiseLevel,
  noiseLevel,
  SolverScheduler,
  solverFields,
} from "./solver-base.js";
import { combine, type Tensor } from "./tensor-ops.js";

export const UNIPC_FIELDS = {
  ...solverFields(3),
  ...finalSigmaField(),
  rescale_betas_zero_snr: booleanField(false),
  /** Work with clean-sample estimates (UniPC with data prediction) rather than noise ones. */
  predict_x0: booleanField(true),
  solver_type: choiceField("bh2", ["bh1", "bh2"]),
  /** Step indices whose corrector is skipped. */
  disable_corrector: numberListField([]),
  solver_p: fixedField(null, "an external predictor is not supported"),
  sigma_min: fixedField(null, "custom Karras bounds are not supported here"),
  sigma_max: fixedField(null, "custom Karras bounds are not supported here"),
  shift_terminal: fixedField(null, "terminal shifting is not implemented"),
};
export type UniPcConfig = ConfigOf<typeof UNIPC_FIELDS>;

/** Solves A x = b by Gaussian elimination with partial pivoting (tiny systems). */
function solveLinear(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row.slice(0, n), b[i]]);
  for (let col = 0; col < n; col++) {
    let pivot = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(m[r][col]) > Math.abs(m[pivot][col])) pivot = r;
    [m[col], m[pivot]] = [m[pivot], m[col]];
    for (let r = col + 1; r < n; r++) {
      const f = m[r][col] / m[col][col];
      for (let k = col; k <= n; k++) m[r][k] -= f * m[col][k];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let sum = m[r][n];
    for (let k = r + 1; k < n; k++) sum -= m[r][k] * x[k];
    x[r] = sum / m[r][r];
  }
  return x;
}

export class UniPcScheduler extends SolverScheduler<UniPcConfig> {
  /** Sample and order of the last prediction, for the next step's corrector. */
  private last: { sample: Float32Array; order: number } | undefined;

  protected computeTimesteps(steps: number): void {
    this.planSigmas(steps, this.finalSigma(this.config.final_sigmas_type));
  }

  protected override resetState(): void {
    super.resetState();
    this.last = undefined;
  }

  protected advance(input: StepInput): Float64Array {
    const { modelOutput, sample, dims, index } = input;
    const c = this.config;
    const sigma = this.sigmas[index];
    const converted = this.convertOutput(c.predict_x0, modelOutput, sample, sigma, dims);
    let current: Tensor = sample;
    if (index > 0 && this.last !== undefined && !c.disable_corrector.includes(index - 1)) {
      current = this.correct(index, converted, this.last.sample, this.last.order);
    }
    this.remember(converted);
    const remaining = this.timesteps.length - index;
    const order = Math.min(
      c.lower_order_final ? Math.min(c.solver_order, remaining) : c.solver_order,
      this.warmSteps + 1,
    );
    const currentSample = Float32Array.from(current);
    this.last = { sample: currentSample, order };
    const prev = this.predict(index, currentSample, order);
    this.warmUp();
    return prev;
  }

  /**
   * The shared pieces of UniP and UniC between levels s (where the newest stored output m0 was
   * made) and t: the divided differences of the older outputs and the weight vector b with the
   * matrix R of rk powers (sec. 3.2).
   */
  private weights(s: NoiseLevel, t: NoiseLevel, olderIndices: readonly number[], order: number) {
    const h = t.lambda - s.lambda;
    const hh = this.config.predict_x0 ? -h : h;
    const history = this.history;
    const m0 = history[history.length - 1];
    const rks: number[] = [];
    const differences: Float64Array[] = [];
    olderIndices.forEach((sigmaIndex, i) => {
      const rk = (noiseLevel(this.sigmas[sigmaIndex]).lambda - s.lambda) / h;
      rks.push(rk);
      differences.push(
        combine([
          [1 / rk, history[history.length - 2 - i]],
          [-1 / rk, m0],
        ]),
      );
    });
    rks.push(1);
    const hPhi1 = Math.expm1(hh);
    const bH = this.config.solver_type === "bh1" ? hh : hPhi1;
    const rows: number[][] = [];
    const b: number[] = [];
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    for (let i = 1; i <= order; i++) {
      rows.push(rks.map((r) => r ** (i - 1)));
      b.push((hPhiK * factorial) / bH);
      factorial *= i + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    return { m0, hPhi1, bH, rows, b, differences };
  }

  /** x_t = (sigma_t / sigma_s) x - alpha_t (e^-h - 1) m0 for data prediction, likewise for noise. */
  private baseTerms(
    s: NoiseLevel,
    t: NoiseLevel,
    x: Tensor,
    m0: Tensor,
    hPhi1: number,
  ): { terms: [number, Tensor][]; scale: number } {
    return this.config.predict_x0
      ? {
          terms: [
            [t.sigma / s.sigma, x],
            [-t.alpha * hPhi1, m0],
          ],
          scale: t.alpha,
        }
      : {
          terms: [
            [t.alpha / s.alpha, x],
            [-t.sigma * hPhi1, m0],
          ],
          scale: t.sigma,
        };
  }

  /** UniP: the sample at the next level from `sample` at this one. */
  private predict(index: number, sample: Tensor, order: number): Float64Array {
    const s = noiseLevel(this.sigmas[index]);
    const t = noiseLevel(this.sigmas[index + 1]);
    const older = Array.from({ length: order - 1 }, (_, i) => index - 1 - i);
    const w = this.weights(s, t, older, order);
    const { terms, scale } = this.baseTerms(s, t, sample, w.m0, w.hPhi1);
    if (w.differences.length > 0) {
      // Second order uses rho = 1/2, as the paper does; higher orders solve for the rhos.
      const rhos = order === 2 ? [0.5] : solveLinear(w.rows.slice(0, -1), w.b.slice(0, -1));
      w.differences.forEach((d, k) => {
        terms.push([-scale * w.bH * rhos[k], d]);
      });
    }
    return combine(terms);
  }

  /** UniC: the current sample corrected with the model output made from it. */
  private correct(
    index: number,
    converted: Float64Array,
    lastSample: Float32Array,
    order: number,
  ): Float64Array {
    const s = noiseLevel(this.sigmas[index - 1]);
    const t = noiseLevel(this.sigmas[index]);
    const older = Array.from({ length: order - 1 }, (_, i) => index - 2 - i);
    const w = this.weights(s, t, older, order);
    const { terms, scale } = this.baseTerms(s, t, lastSample, w.m0, w.hPhi1);
    const rhos = order === 1 ? [0.5] : solveLinear(w.rows, w.b);
    w.differences.forEach((d, k) => {
      terms.push([-scale * w.bH * rhos[k], d]);
    });
    const last = rhos[rhos.length - 1];
    terms.push([-scale * w.bH * last, converted], [scale * w.bH * last, w.m0]);
    return combine(terms);
  }
}
