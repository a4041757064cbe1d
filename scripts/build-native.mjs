// Builds the native HCS simulator (native/src/*.cpp) into build/native/libhcssim.so with plain
// compiler calls (one per source, run in parallel, then one link). Run by the package's `install`
// script (scripts/install.mjs). On Windows nothing is built: the binding loads the real
// computecore.dll there.
//
//   node scripts/build-native.mjs            build the shared library
//   node scripts/build-native.mjs --test     also build and run the simulator's own C++ tests
//   HCSSIM_SANITIZE=address node scripts/build-native.mjs --test   the same under AddressSanitizer
//   CXX=clang++ node scripts/build-native.mjs                      another compiler (default g++)
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (process.platform === 'win32') {
  console.log('build-native: Windows host, the binding uses computecore.dll; nothing to build');
  process.exit(0);
}
const cxx = process.env.CXX || 'g++';
const sanitize = process.env.HCSSIM_SANITIZE;
const outDir = join(root, 'build', 'native');
const objDir = join(outDir, sanitize ? `obj-${sanitize}` : 'obj');
mkdirSync(objDir, { recursive: true });
const sourcesOf = (dir) =>
  readdirSync(join(root, 'native', dir))
    .filter((f) => f.endsWith('.cpp'))
    .sort()
    .map((f) => join(root, 'native', dir, f));
const common = ['-std=c++17', '-Wall', '-Wextra', '-fPIC', '-pthread', '-I', join(root, 'native', 'include')];
const opt = sanitize ? ['-O1', '-g', `-fsanitize=${sanitize}`, '-fno-omit-frame-pointer'] : ['-O2'];
const lib = join(outDir, sanitize ? `libhcssim-${sanitize}.so` : 'libhcssim.so');
const execFileAsync = promisify(execFile);

/** Compiles each source to an object file, `jobs` at a time; resolves with the object files. */
async function compileAll(sources, extra, prefix) {
  const objects = sources.map((src) => join(objDir, `${prefix}${basename(src, '.cpp')}.o`));
  let next = 0;
  const worker = async () => {
    while (next < sources.length) {
      const i = next++;
      try {
        await execFileAsync(cxx, [...common, ...opt, ...extra, '-c', '-o', objects[i], sources[i]], { cwd: root });
      } catch (err) {
        process.stderr.write(err.stderr ?? '');
        throw new Error(`build-native: ${cxx} failed on ${sources[i]}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(availableParallelism(), sources.length)) }, worker));
  return objects;
}

function link(args) {
  execFileSync(cxx, args, { stdio: 'inherit', cwd: root });
}

const libObjects = await compileAll(sourcesOf('src'), ['-fvisibility=hidden'], '');
link([...common, ...opt, '-shared', '-Wl,-z,nodelete', '-o', lib, ...libObjects]);
console.log(`build-native: ${lib}`);

if (process.argv.includes('--test')) {
  // The tests link the sources directly (default visibility), so compile them again without -fvisibility.
  const testObjects = await compileAll([...sourcesOf('test'), ...sourcesOf('src')], ['-I', join(root, 'native', 'src')], 't-');
  const exe = join(outDir, sanitize ? `hcssim-tests-${sanitize}` : 'hcssim-tests');
  link([...common, ...opt, '-o', exe, ...testObjects]);
  execFileSync(exe, [], { stdio: 'inherit', cwd: root });
}
