import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfigJson, readConfigFile } from "../../src/configs/config-json.js";
import { fixturePath } from "../fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "config-json-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("parseConfigJson", () => {
  it("accepts the bare non-finite tokens Python writes", () => {
    const value = parseConfigJson(
      '{"a": NaN, "b": Infinity, "c": -Infinity, "d": [1, -Infinity, NaN], "e": {"f": Infinity}}',
      "x.json",
    );
    expect(value).toEqual({
      a: Number.NaN,
      b: Number.POSITIVE_INFINITY,
      c: Number.NEGATIVE_INFINITY,
      d: [1, Number.NEGATIVE_INFINITY, Number.NaN],
      e: { f: Number.POSITIVE_INFINITY },
    });
  });

  it("parses ordinary JSON exactly as JSON.parse does", () => {
    const texts = [
      '{"x": [1, 2.5, -3e-7, 0, true, false, null], "s": "a\\"b\\\\c\\u00e9\\n", "": {}}',
      "[]",
      '  "text"  ',
      "-0.125",
      readFileSync(fixturePath("pipelines", "sdxl-tiny", "unet", "config.json"), "utf8"),
    ];
    for (const text of texts) expect(parseConfigJson(text, "x.json")).toEqual(JSON.parse(text));
  });

  it("keeps strings that spell the tokens as strings", () => {
    expect(parseConfigJson('["NaN", "Infinity", "-Infinity"]', "x.json")).toEqual([
      "NaN",
      "Infinity",
      "-Infinity",
    ]);
  });

  it("treats a __proto__ key as an ordinary property", () => {
    const value = parseConfigJson('{"__proto__": {"polluted": 1}}', "x.json") as Record<
      string,
      unknown
    >;
    expect(Object.keys(value)).toEqual(["__proto__"]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("names the file, line and column of malformed JSON in one line", () => {
    const cases: [string, RegExp][] = [
      [
        '{"a": 1,\n "b": }',
        /^cfg\.json: malformed JSON at line 2, column 7: unexpected character "}"$/,
      ],
      ['{"a": 1,}', /^cfg\.json: malformed JSON at line 1, column 9: expected a property name/],
      ['{"a": nan}', /^cfg\.json: malformed JSON .*unexpected character "n"$/],
      ['{"a": 1} x', /^cfg\.json: malformed JSON .*unexpected text after the JSON value$/],
      ['{"a": "x', /^cfg\.json: malformed JSON .*unterminated string$/],
      ['{"a": 1', /^cfg\.json: malformed JSON .*expected ',' or '}'/],
      ["", /^cfg\.json: malformed JSON .*unexpected end of input$/],
      ['["\\q"]', /^cfg\.json: malformed JSON .*invalid escape/],
    ];
    for (const [text, pattern] of cases) {
      expect(() => parseConfigJson(text, "cfg.json")).toThrow(pattern);
    }
  });
});

describe("readConfigFile", () => {
  it("reads an object with non-finite tokens", () => {
    const path = join(dir, "scheduler_config.json");
    writeFileSync(
      path,
      '{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity}',
    );
    expect(readConfigFile(path).lambda_min_clipped).toBe(Number.NEGATIVE_INFINITY);
  });

  it("rejects a missing file, a folder and a non-object, naming the path", () => {
    expect(() => readConfigFile(join(dir, "absent.json"))).toThrow(/absent\.json: file not found$/);
    expect(() => readConfigFile(dir)).toThrow(/: not a file$/);
    const list = join(dir, "list.json");
    writeFileSync(list, "[1, 2]");
    expect(() => readConfigFile(list)).toThrow(
      /list\.json: expected a JSON object at the top level$/,
    );
  });
});
