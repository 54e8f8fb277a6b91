/**
 * Configuration files of real model repositories (`config.json`, `scheduler_config.json`,
 * `model_index.json`) are JSON written by Python's `json` module, which emits the bare tokens
 * `NaN`, `Infinity` and `-Infinity` for non-finite floats. `JSON.parse` rejects them, so this
 * is a small strict JSON parser that accepts exactly those three extra tokens and nothing else.
 */
import { readFileSync, statSync } from "node:fs";

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** Parses JSON text that may contain bare `NaN`, `Infinity`, `-Infinity`; errors name `label`. */
export function parseConfigJson(text: string, label: string): JsonValue {
  return new JsonParser(text, label).parseDocument();
}

/** Reads and parses a JSON file that must hold an object; every failure is one line naming it. */
export function readConfigFile(path: string): JsonObject {
  let text: string;
  try {
    if (!statSync(path).isFile()) throw new Error(`${path}: not a file`);
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new Error(`${path}: file not found`);
    if (code === undefined) throw error;
    throw new Error(`${path}: cannot read (${code})`);
  }
  const value = parseConfigJson(text, path);
  if (!isJsonObject(value)) throw new Error(`${path}: expected a JSON object at the top level`);
  return value;
}

export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The bare tokens: JSON's own, and the three non-finite numbers Python writes. */
const LITERALS: ReadonlyArray<readonly [string, JsonValue]> = [
  ["NaN", Number.NaN],
  ["Infinity", Number.POSITIVE_INFINITY],
  ["-Infinity", Number.NEGATIVE_INFINITY],
  ["true", true],
  ["false", false],
  ["null", null],
];

const NUMBER_PATTERN = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class JsonParser {
  private at = 0;

  constructor(
    private readonly text: string,
    private readonly label: string,
  ) {}

  parseDocument(): JsonValue {
    // A byte-order mark is legal at the start of a UTF-8 file written by some editors.
    if (this.text.charCodeAt(0) === 0xfeff) this.at = 1;
    const value = this.parseValue();
    this.skipWhitespace();
    if (this.at < this.text.length) this.fail("unexpected text after the JSON value");
    return value;
  }

  private parseValue(): JsonValue {
    this.skipWhitespace();
    const c = this.text[this.at];
    if (c === "{") return this.parseObject();
    if (c === "[") return this.parseArray();
    if (c === '"') return this.parseString();
    for (const [token, value] of LITERALS) {
      if (this.text.startsWith(token, this.at)) {
        this.at += token.length;
        return value;
      }
    }
    NUMBER_PATTERN.lastIndex = this.at;
    const match = NUMBER_PATTERN.exec(this.text);
    if (match) {
      this.at += match[0].length;
      return Number(match[0]);
    }
    if (c === undefined) this.fail("unexpected end of input");
    return this.fail(`unexpected character ${JSON.stringify(c)}`);
  }

  private parseObject(): JsonObject {
    const out: JsonObject = {};
    this.parseSequence("}", "an object", () => {
      this.skipWhitespace();
      if (this.text[this.at] !== '"') this.fail("expected a property name in double quotes");
      const key = this.parseString();
      this.skipWhitespace();
      if (this.text[this.at] !== ":") this.fail("expected ':' after a property name");
      this.at++;
      // defineProperty keeps a key named "__proto__" an ordinary property.
      Object.defineProperty(out, key, {
        value: this.parseValue(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    });
    return out;
  }

  private parseArray(): JsonValue[] {
    const out: JsonValue[] = [];
    this.parseSequence("]", "an array", () => out.push(this.parseValue()));
    return out;
  }

  /** Comma-separated items from the opening bracket at `at` up to `close`, or none. */
  private parseSequence(close: "}" | "]", what: string, item: () => void): void {
    this.at++; // the opening bracket
    this.skipWhitespace();
    if (this.text[this.at] === close) {
      this.at++;
      return;
    }
    for (;;) {
      item();
      this.skipWhitespace();
      const c = this.text[this.at++];
      if (c === close) return;
      if (c !== ",") {
        this.at--;
        this.fail(`expected ',' or '${close}' in ${what}`);
      }
    }
  }

  private parseString(): string {
    const start = this.at;
    this.at++; // opening quote
    for (;;) {
      const code = this.text.charCodeAt(this.at);
      if (Number.isNaN(code)) this.fail("unterminated string");
      if (code === 0x22) break;
      if (code < 0x20) this.fail("control character in a string");
      this.at += code === 0x5c ? 2 : 1;
    }
    this.at++; // closing quote
    const literal = this.text.slice(start, this.at);
    try {
      // The literal is a complete JSON string, so the built-in parser decodes its escapes.
      return JSON.parse(literal) as string;
    } catch {
      this.at = start;
      return this.fail("invalid escape in a string");
    }
  }

  private skipWhitespace(): void {
    for (;;) {
      const c = this.text[this.at];
      if (c === " " || c === "\t" || c === "\n" || c === "\r") this.at++;
      else return;
    }
  }

  private fail(why: string): never {
    const before = this.text.slice(0, this.at);
    const line = before.split("\n").length;
    const column = this.at - before.lastIndexOf("\n");
    throw new Error(`${this.label}: malformed JSON at line ${line}, column ${column}: ${why}`);
  }
}
