// The inputs of one UNet fixture case (cases/unet-*.json), as onnxruntime feeds.
import { float32Tensor, type OrtTensor } from "../src/runtime/session.js";
import type { SafetensorsFile } from "../src/weights/safetensors.js";

/** sample, timestep (the case's one timestep for every row), context, and SDXL's conditioning. */
export function unetCaseFeeds(tensors: SafetensorsFile, size: string): Record<string, OrtTensor> {
  const tensor = (key: string): OrtTensor =>
    float32Tensor(tensors.readFloat32(`${size}.${key}`), tensors.info(`${size}.${key}`).shape);
  const sample = tensor("sample");
  const t = tensors.readFloat32(`${size}.timestep`)[0];
  const feeds: Record<string, OrtTensor> = {
    sample,
    timestep: float32Tensor(new Float32Array(sample.dims[0]).fill(t), [sample.dims[0]]),
    encoder_hidden_states: tensor("encoder_hidden_states"),
  };
  if (tensors.has(`${size}.text_embeds`)) {
    feeds.text_embeds = tensor("text_embeds");
    feeds.time_ids = tensor("time_ids");
  }
  return feeds;
}
