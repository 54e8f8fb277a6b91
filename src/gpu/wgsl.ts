/**
 * WGSL source helpers shared by the kernel generators: the storage type is made generic by
 * generating `alias T = f16;` (with `enable f16;`) or `alias T = f32;` at the top of a kernel, and
 * every kernel body is written in terms of `T` and converts to f32 for arithmetic.
 */
import type { StorageType } from "./types.js";

/** The `enable` directives and storage aliases every kernel starts with. */
export function storagePreamble(storage: StorageType, extensions: readonly string[] = []): string {
  const enables = [...(storage === "f16" ? ["f16"] : []), ...extensions];
  return [
    enables.length > 0 ? `enable ${enables.join(", ")};` : "",
    `alias T = ${storage};`,
    "alias T4 = vec4<T>;",
  ]
    .filter(Boolean)
    .join("\n");
}

/**
 * Throws `<label>: <name> must be a positive integer` for the first size that is not one: every
 * kernel generator checks its shape with this before it writes a literal from it.
 */
export function checkPositiveSizes(label: string, sizes: Record<string, number>): void {
  for (const [name, value] of Object.entries(sizes))
    if (!Number.isInteger(value) || value < 1)
      throw new Error(`${label}: ${name} must be a positive integer, got ${value}`);
}

/** A WGSL unsigned literal. */
export function u32Literal(value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff)
    throw new Error(`${value} is not a u32`);
  return `${value}u`;
}

/** An f32 value as a WGSL literal that reads back as the same f32. */
export function f32Literal(value: number): string {
  const text = Math.fround(value).toPrecision(9);
  return text.includes(".") || text.includes("e") ? text : `${text}.0`;
}

/** `erf` (absent from WGSL) and exact-erf GELU in f32, for kernels that fuse GELU. */
export const GELU_WGSL = `
// erf by Abramowitz and Stegun 7.1.26 (|error| <= 1.5e-7), as WGSL has none.
fn erf_f32(x: f32) -> f32 {
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
  return sign(x) * (1.0 - poly * exp(-a * a));
}
// GELU with the exact erf form, as torch's nn.GELU() and ONNX's Gelu compute it.
fn gelu_f32(x: f32) -> f32 {
  return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752));
}
`;

/**
 * How a shader spells the subgroup-matrix load and store: `template`, Dawn's current form, takes
 * the majorness as a template argument (`subgroupMatrixLoad<M, row_major>(p, offset, stride)`,
 * `subgroupMatrixStore<row_major>(p, offset, value, stride)`); `argument`, the first form
 * (deprecated, and warned about at every compilation), passes it as a bool argument. Kernels try
 * the current form first and fall back for older implementations.
 */
export type MatrixSpelling = "template" | "argument";

export const MATRIX_SPELLINGS: readonly MatrixSpelling[] = Object.freeze(["template", "argument"]);

function majorness(colMajor: boolean): string {
  return colMajor ? "col_major" : "row_major";
}

/** `subgroupMatrixLoad` of a matrix type from `&array`, `offset` elements in. */
export function matrixLoad(
  spelling: MatrixSpelling,
  type: string,
  pointer: string,
  offset: string,
  colMajor: boolean,
  stride: string,
): string {
  return spelling === "template"
    ? `subgroupMatrixLoad<${type}, ${majorness(colMajor)}>(${pointer}, ${offset}, ${stride})`
    : `subgroupMatrixLoad<${type}>(${pointer}, ${offset}, ${colMajor}, ${stride})`;
}

/** The `subgroupMatrixStore` statement of `value` into `&array`, `offset` elements in. */
export function matrixStore(
  spelling: MatrixSpelling,
  pointer: string,
  offset: string,
  value: string,
  colMajor: boolean,
  stride: string,
): string {
  return spelling === "template"
    ? `subgroupMatrixStore<${majorness(colMajor)}>(${pointer}, ${offset}, ${value}, ${stride});`
    : `subgroupMatrixStore(${pointer}, ${offset}, ${value}, ${colMajor}, ${stride});`;
}
