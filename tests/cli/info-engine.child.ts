// Child of info-engine.test.ts, on SwiftShader: `info --device webgpu` through the CLI, text and
// JSON, for auto and kernels; prints one JSON line.
import { main } from "../../src/cli/main.js";

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const chunks: string[] = [];
  const write = process.stdout.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
    return true;
  }) as typeof process.stdout.write;
  try {
    return { code: await main(args), out: chunks.join("") };
  } finally {
    process.stdout.write = write;
  }
}

const [model] = process.argv.slice(2);
const auto = await run(["info", model, "--device", "webgpu", "--json"]);
const kernels = await run(["info", model, "--device", "webgpu", "--engine", "kernels"]);
console.log(
  JSON.stringify({
    autoCode: auto.code,
    engine: JSON.parse(auto.out).engine,
    kernelsCode: kernels.code,
    kernelsText: kernels.out,
  }),
);
