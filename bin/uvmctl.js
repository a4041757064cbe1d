#!/usr/bin/env node
/* global process, console */
// uvmctl: run or plan a UVM scenario (see `uvmctl help` and README "The CLI").
// The CLI itself is compiled TypeScript in build/src/cli; `npm run build` produces it.
let cli;
try {
  cli = await import('../build/src/cli/main.js');
} catch (err) {
  if (err?.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('build/src/cli/main.js')) {
    console.error('uvmctl: the CLI is not built; run `npm run build` first');
    process.exit(1);
  }
  throw err;
}
process.exitCode = await cli.main(process.argv.slice(2));
