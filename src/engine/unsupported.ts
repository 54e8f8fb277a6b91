/**
 * What the kernels engine does not run (yet): an operator, an element type or a shape. Its own
 * error class, so that a caller that can run the model on another engine (`withFallback`) tells
 * it from a real failure.
 */
export class UnsupportedByKernels extends Error {
  override readonly name = "UnsupportedByKernels";
}

/** The error for `what`, worded as one line with the way out. */
export function unsupported(what: string): UnsupportedByKernels {
  return new UnsupportedByKernels(
    `${what} is not supported by the kernels engine yet; use --engine onnxruntime`,
  );
}
