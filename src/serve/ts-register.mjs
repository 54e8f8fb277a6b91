// `node --import` this to run the TypeScript sources directly (tests, development): it
// registers ts-hooks.mjs. The built package never uses it.
import { register } from "node:module";

register("./ts-hooks.mjs", import.meta.url);
