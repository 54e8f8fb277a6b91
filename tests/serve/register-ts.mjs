// `node --import` this to run the TypeScript sources directly (the tests' child processes).
import { register } from "node:module";

register("../../src/serve/ts-hooks.mjs", import.meta.url);
