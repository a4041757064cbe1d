#!/usr/bin/env node
/* global process, console */
// Creates the host-side files the example scenarios need — sparse layer.vhd / sandbox.vhdx
// files, bind-mount sources — from each scenario's "fixtures" list, under examples/<pod>/host/
// (git-ignored). Existing files are left alone. `uvmctl run` and `uvmctl plan` do the same
// before reading the bundles, so this script is only needed to look at the files first.
//
//   node examples/make-fixtures.mjs                      # every examples/*/scenario.json
//   node examples/make-fixtures.mjs path/to/scenario.json …
//
// It uses the compiled CLI modules (build/src/cli), so run `npm run build` first.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const cliDir = path.join(here, '..', 'build', 'src', 'cli');
if (!existsSync(path.join(cliDir, 'fixtures.js'))) {
  console.error('make-fixtures: build/src/cli is missing; run `npm run build` first');
  process.exit(1);
}
const { readScenarioFile } = await import(pathToFileURL(path.join(cliDir, 'scenario.js')).href);
const { ensureFixtures } = await import(pathToFileURL(path.join(cliDir, 'fixtures.js')).href);

const files =
  process.argv.length > 2
    ? process.argv.slice(2)
    : readdirSync(here, { withFileTypes: true })
        .filter((e) => e.isDirectory() && existsSync(path.join(here, e.name, 'scenario.json')))
        .map((e) => path.join(here, e.name, 'scenario.json'));

for (const file of files) {
  try {
    const scenario = await readScenarioFile(file);
    const created = await ensureFixtures(scenario.fixtures);
    console.log(`${path.relative(process.cwd(), file) || file}: ${created.length} created, ${scenario.fixtures.length - created.length} already there`);
  } catch (err) {
    console.error(`make-fixtures: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  }
}
