// Public API of todo-sd. Everything a user imports comes through here.
export { type NoiseSource, recordedNoise, SeededRandom, seededNoise } from "./util/random.js";
export { encodeSafetensors, SafetensorsFile } from "./weights/safetensors.js";
