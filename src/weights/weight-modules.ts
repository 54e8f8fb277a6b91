/**
 * Weight names and shapes as a list of modules: a module is a key prefix
 * (`down_blocks.1.resnets.0`) with the tensors under it. Enumerating a model's modules from
 * its config gives the exact key set diffusers/transformers would save, which random weights
 * are generated for and single-file checkpoints are mapped onto.
 */

export type Shape = readonly number[];

export interface WeightModule {
  /** Key prefix without the trailing dot; empty for top-level tensors. */
  readonly prefix: string;
  /** Tensor names under the prefix, with their shapes. */
  readonly tensors: ReadonlyArray<readonly [suffix: string, shape: Shape]>;
}

/** Every key (`prefix.suffix`) with its shape, in module order. */
export function flattenModules(modules: readonly WeightModule[]): Map<string, Shape> {
  const out = new Map<string, Shape>();
  for (const module of modules) {
    for (const [suffix, shape] of module.tensors) {
      const key = module.prefix ? `${module.prefix}.${suffix}` : suffix;
      if (out.has(key)) throw new Error(`duplicate weight key "${key}" in a module list`);
      out.set(key, shape);
    }
  }
  return out;
}

export function parameterCount(shapes: ReadonlyMap<string, Shape>): number {
  let total = 0;
  for (const shape of shapes.values()) total += shape.reduce((a, b) => a * b, 1);
  return total;
}

// Building blocks shared by the UNet, the VAE and the text encoders.

export function linear(outFeatures: number, inFeatures: number, bias = true): [string, Shape][] {
  const out: [string, Shape][] = [["weight", [outFeatures, inFeatures]]];
  if (bias) out.push(["bias", [outFeatures]]);
  return out;
}

export function conv2d(outChannels: number, inChannels: number, kernel: number): [string, Shape][] {
  return [
    ["weight", [outChannels, inChannels, kernel, kernel]],
    ["bias", [outChannels]],
  ];
}

/** GroupNorm or LayerNorm affine parameters. */
export function norm(channels: number): [string, Shape][] {
  return [
    ["weight", [channels]],
    ["bias", [channels]],
  ];
}

/** Prefixes each tensor name of a sub-module (`conv1` + `weight` -> `conv1.weight`). */
export function under(name: string, tensors: [string, Shape][]): [string, Shape][] {
  return tensors.map(([suffix, shape]) => [`${name}.${suffix}`, shape]);
}

/**
 * diffusers' ResnetBlock2D: GroupNorm, 3x3 conv, optional time-embedding projection, GroupNorm,
 * 3x3 conv, and a 1x1 conv on the skip path when the channel count changes. With
 * `scaleShift` (resnet_time_scale_shift "scale_shift") the time projection gives a scale and a
 * shift per channel.
 */
export function resnetTensors(
  inChannels: number,
  outChannels: number,
  timeEmbedChannels: number | undefined,
  scaleShift = false,
): [string, Shape][] {
  const tensors = [
    ...under("norm1", norm(inChannels)),
    ...under("conv1", conv2d(outChannels, inChannels, 3)),
  ];
  if (timeEmbedChannels !== undefined) {
    tensors.push(
      ...under(
        "time_emb_proj",
        linear(scaleShift ? 2 * outChannels : outChannels, timeEmbedChannels),
      ),
    );
  }
  tensors.push(
    ...under("norm2", norm(outChannels)),
    ...under("conv2", conv2d(outChannels, outChannels, 3)),
  );
  if (inChannels !== outChannels) {
    tensors.push(...under("conv_shortcut", conv2d(outChannels, inChannels, 1)));
  }
  return tensors;
}
