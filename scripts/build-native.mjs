// Builds the native HCS simulator (native/src/*.cpp) into build/native/libhcssim.so with one plain
// compiler call. Run by `npm ci` through the `prepare` lifecycle script. On Windows nothing is built:
// the binding loads the real computecore.dll there.
//
//   node scripts/build-native.mjs            build the shared library
//   node scripts/build-native.mjs --test     also build and run the simulator's own C++ tests
//   HCSSIM_SANITIZE=address node scripts/build-native.mjs --test   the same under AddressSanitizer
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (process.platform === 'win32') {
  console.log('build-native: Windows host, the binding uses computecore.dll; nothing to build');
  process.exit(0);
}
const cxx = process.env.CXX || 'g++';
const sanitize = process.env.HCSSIM_SANITIZE;
const outDir = join(root, 'build', 'native');
mkdirSync(outDir, { recursive: true });
const sources = readdirSync(join(root, 'native', 'src'))
  .filter((f) => f.endsWith('.cpp'))
  .sort()
  .map((f) => join(root, 'native', 'src', f));
const common = ['-std=c++17', '-Wall', '-Wextra', '-fPIC', '-pthread', '-I', join(root, 'native', 'include')];
const opt = sanitize ? ['-O1', '-g', `-fsanitize=${sanitize}`, '-fno-omit-frame-pointer'] : ['-O2'];
const lib = join(outDir, sanitize ? `libhcssim-${sanitize}.so` : 'libhcssim.so');

function run(args) {
  execFileSync(cxx, args, { stdio: 'inherit', cwd: root });
}

run([...common, ...opt, '-fvisibility=hidden', '-shared', '-Wl,-z,nodelete', '-o', lib, ...sources]);
console.log(`build-native: ${lib}`);

if (process.argv.includes('--test')) {
  const testSources = readdirSync(join(root, 'native', 'test'))
    .filter((f) => f.endsWith('.cpp'))
    .sort()
    .map((f) => join(root, 'native', 'test', f));
  const exe = join(outDir, sanitize ? `hcssim-tests-${sanitize}` : 'hcssim-tests');
  run([...common, ...opt, '-I', join(root, 'native', 'src'), '-o', exe, ...testSources, ...sources]);
  execFileSync(exe, [], { stdio: 'inherit', cwd: root });
}
