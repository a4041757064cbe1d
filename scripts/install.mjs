// The package's `install` script: builds the HCS simulator (build/native/libhcssim.so) with the
// system C++ compiler, so a consumer gets a working `uvmctl run` and simulator-backed tests.
//
// - Windows: nothing native is built (the binding loads the real computecore.dll).
// - No C++ compiler ($CXX, else g++, c++, clang++): one line saying so, exit 0 — the library
//   works without the simulator (real HCS through UVM_HCS_LIBRARY, or FakeHcs in unit tests).
// - A compiler that fails: one line and exit 0 for a consumer; exit 1 in this repository's own
//   checkout (native/test exists there, not in the package), where a broken build must be loud.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PREFIX = 'uvm-orchestrator:';
const HINT = 'the library works without it (real HCS, UVM_HCS_LIBRARY, or FakeHcs); run `npm rebuild uvm-orchestrator` once a C++17 compiler is installed';

if (process.platform === 'win32') process.exit(0);

/** The first compiler that answers `--version`. */
function findCompiler() {
  const candidates = process.env.CXX ? [process.env.CXX] : ['g++', 'c++', 'clang++'];
  for (const cxx of candidates) {
    const probe = spawnSync(cxx, ['--version'], { stdio: 'ignore' });
    if (probe.status === 0) return cxx;
  }
  return undefined;
}

const cxx = findCompiler();
if (cxx === undefined) {
  const tried = process.env.CXX ? `CXX=${process.env.CXX}` : 'g++, c++, clang++';
  console.warn(`${PREFIX} no C++ compiler found (tried ${tried}): the HCS simulator is not built; ${HINT}`);
  process.exit(0);
}
try {
  execFileSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, CXX: cxx },
  });
} catch (err) {
  const inRepo = existsSync(join(root, 'native', 'test'));
  if (inRepo) {
    process.stderr.write(err.stderr ?? '');
    console.error(`${PREFIX} building the HCS simulator with ${cxx} failed`);
    process.exit(1);
  }
  console.warn(`${PREFIX} building the HCS simulator with ${cxx} failed: the simulator is not available; ${HINT}`);
  process.exit(0);
}
