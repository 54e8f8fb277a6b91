// The LoRA sets one pipeline keeps loaded: the loaded set always, the most recently used others
// up to LOADED_LORA_SETS, an older one released only once no call uses it.
import { afterAll, describe, expect, it } from "vitest";
import { openModelFiles } from "../../src/pipelines/load.js";
import { LOADED_LORA_SETS, loraVariants } from "../../src/pipelines/lora-variants.js";
import { fixturePath } from "../fixtures.js";

const KOHYA = fixturePath("lora", "style.kohya.safetensors");
const opened = await openModelFiles(fixturePath("pipelines", "sd15-tiny"));
afterAll(() => opened.files.close());

describe("loraVariants", () => {
  it("releases the least recently used idle set beyond the limit, never one in use", async () => {
    const released: string[] = [];
    let made = 0;
    const variants = loraVariants(
      opened.files,
      "sd1",
      { loras: [{ path: KOHYA, weight: 1 }] },
      () => {
        const id = `set${made++}`;
        return {
          textEncoders: [],
          unet: () => Promise.reject(new Error("not built here")),
          release: async () => {
            released.push(id);
          },
        };
      },
    );
    expect(variants.own.loras.map((l) => l.weight)).toEqual([1]);
    // set0 is the loaded set; the same set asked for again is not made twice.
    const same = await variants.withLoras([{ path: KOHYA, weight: 1 }]);
    same.done?.();
    expect(made).toBe(1);
    const use = async (weight: number) =>
      (await variants.withLoras([{ path: KOHYA, weight }])).done?.();
    const busy = await variants.withLoras([{ path: KOHYA, weight: 0.1 }]); // set1, in use
    await use(0.2); // set2
    await use(0.3); // set3: three besides the loaded set; set1 is the oldest but busy
    await Promise.resolve();
    expect(LOADED_LORA_SETS).toBe(2);
    expect(released).toEqual(["set2"]);
    busy.done?.();
    await use(0.4); // set4: set1, idle now, is the oldest
    await Promise.resolve();
    expect(released).toEqual(["set2", "set1"]);
    await use(0.1); // made again (set5); set3 goes
    expect(made).toBe(6);
    await Promise.resolve();
    expect(released).toEqual(["set2", "set1", "set3"]);
    await variants.release();
    expect(released.slice(3).sort()).toEqual(["set0", "set4", "set5"]);
  });
});
