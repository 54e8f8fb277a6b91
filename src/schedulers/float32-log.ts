/**
 * The float32 natural logarithm that NumPy's vectorised loops compute (its AVX2/AVX-512 path):
 * the argument is split into a mantissa m in (sqrt(1/2), sqrt(2)] and a power of two e, and
 * log(m) comes from a degree-5 rational approximation of log(1 + x) evaluated with fused
 * multiply-adds. It is not always the correctly rounded result (about 7% of inputs differ in
 * the last bit), and reference schedules derive fractional timesteps from log-sigma tables made
 * this way, so exact timesteps need the same values. Positive normal inputs only.
 */

const f32 = Math.fround;

/** The approximation's coefficients as float32 bit patterns, lowest power first. */
const fromBits = (bits: number) => {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, bits);
  return view.getFloat32(0);
};
const NUMERATOR = [0x00000000, 0x3f800000, 0x4007361c, 0x3fbd70a9, 0x3ec30333, 0x3cd42bcd].map(
  fromBits,
);
const DENOMINATOR = [0x3f800000, 0x4027361c, 0x401cfe0d, 0x3f7c8ae4, 0x3e1e5bf3, 0x3bc083df].map(
  fromBits,
);
const LN2 = f32(Math.LN2);
const SQRT_HALF = f32(Math.SQRT1_2);

/** a * b + c rounded once to float32 (the product of two float32 values is exact in float64). */
function fusedMultiplyAdd(a: number, b: number, c: number): number {
  return f32(a * b + c);
}

function horner(coefficients: readonly number[], x: number): number {
  let acc = coefficients[coefficients.length - 1];
  for (let i = coefficients.length - 2; i >= 0; i--)
    acc = fusedMultiplyAdd(acc, x, coefficients[i]);
  return acc;
}

const scratch = new DataView(new ArrayBuffer(4));

export function logFloat32(value: number): number {
  if (!(value > 0) || value === Number.POSITIVE_INFINITY) return Math.log(value);
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  if (bits >>> 23 === 0) return f32(Math.log(value)); // subnormal: outside what schedules need
  let exponent = (bits >>> 23) - 126;
  scratch.setUint32(0, (bits & 0x007fffff) | (126 << 23));
  let mantissa = scratch.getFloat32(0); // in [0.5, 1)
  if (mantissa <= SQRT_HALF) {
    mantissa *= 2;
    exponent -= 1;
  }
  const x = f32(mantissa - 1);
  return fusedMultiplyAdd(exponent, LN2, f32(horner(NUMERATOR, x) / horner(DENOMINATOR, x)));
}
