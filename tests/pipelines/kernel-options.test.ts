// Which kernels-engine options each component's runner gets: the VAE's convolutions read their
// NCHW inputs directly (faster on its large maps), the UNet's and the text encoders' read NHWC
// copies (faster on the UNet's smaller maps; BENCHMARKS.md measured both ways).
import { describe, expect, it } from "vitest";
import { kernelExecutorOptions } from "../../src/pipelines/plan-runners.js";

describe("kernel executor options per component", () => {
  it("reads convolution inputs directly in the VAE only", () => {
    expect(kernelExecutorOptions("vae_decoder").channelsFirstConv).toBe(true);
    expect(kernelExecutorOptions("vae_encoder").channelsFirstConv).toBe(true);
    for (const component of ["unet", "text_encoder", "text_encoder_2", "sampler_step"])
      expect(kernelExecutorOptions(component).channelsFirstConv, component).toBe(false);
  });
});
