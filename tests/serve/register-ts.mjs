// `node --import` this to run the TypeScript sources directly (the tests' child processes).
import "../../src/serve/ts-register.mjs";
