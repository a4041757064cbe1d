// Builds the native HCS simulator (native/src/*.cpp) into build/native/libhcssim.so with plain
// compiler calls (one per source, run in parallel, then one link). Run by the package's `install`
// script (scripts/install.mjs). On Windows nothing is built: the binding loads the real
// computecore.dll there.
//
//   node scripts/build-native.mjs            build the shared library
//   node scripts/build-native.mjs --test     also build and run the simulator's own C++ tests
//   HCSSIM_SANITIZE=address node scripts/build-native.mjs --test   the same under AddressSanitizer
//   CXX=clang++ node scripts/build-native.mjs                      another compiler (default g++)
//
// Object cache: an object file is reused when the compiler (its `--version`), the flags, the
// source and every header under native/ are byte for byte what they were (a SHA-256 of all of
// them names it), so a rebuild compiles only what changed. On by default in this repository's
// checkout (build/native/cache); elsewhere (an installed package) only when UVM_NATIVE_CACHE names
// a cache folder — the package round-trip test points it at this repository's cache, so the
// consumer's install script still compiles the shipped sources whenever they differ in any byte.
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
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

const cacheDir = process.env.UVM_NATIVE_CACHE || (existsSync(join(root, 'native', 'test')) ? join(root, 'build', 'native', 'cache') : undefined);
/** What an object depends on besides its source: the compiler and the headers of `dirs` under native/ (by relative path). */
function dependencyKey(dirs) {
  const h = createHash('sha256').update(compilerVersion);
  for (const dir of dirs) {
    if (!existsSync(join(root, 'native', dir))) continue;
    for (const f of readdirSync(join(root, 'native', dir)).filter((n) => n.endsWith('.h')).sort()) {
      h.update(`\0${dir}/${f}\0`).update(readFileSync(join(root, 'native', dir, f)));
    }
  }
  return h.digest('hex');
}
const compilerVersion = cacheDir === undefined ? '' : execFileSync(cxx, ['--version'], { encoding: 'utf8' });

/** The cache file of an object: a hash of its dependencies, the flags (root-relative) and the source. */
function cacheFile(dependencies, flags, source) {
  const h = createHash('sha256').update(dependencies).update(flags.map((f) => f.split(root).join('<root>')).join('\0')).update('\0').update(readFileSync(source));
  return join(cacheDir, `${h.digest('hex')}.o`);
}

/** Compiles each source to an object file, `jobs` at a time; resolves with the object files. */
async function compileAll(sources, extra, prefix, headerDirs) {
  const objects = sources.map((src) => join(objDir, `${prefix}${basename(src, '.cpp')}.o`));
  const dependencies = cacheDir === undefined ? '' : dependencyKey(headerDirs);
  if (cacheDir !== undefined) mkdirSync(cacheDir, { recursive: true });
  let next = 0;
  const worker = async () => {
    while (next < sources.length) {
      const i = next++;
      const flags = [...common, ...opt, ...extra];
      const cached = cacheDir === undefined ? undefined : cacheFile(dependencies, flags, sources[i]);
      if (cached !== undefined && existsSync(cached)) {
        copyFileSync(cached, objects[i]);
        continue;
      }
      try {
        await execFileAsync(cxx, [...flags, '-c', '-o', objects[i], sources[i]], { cwd: root });
      } catch (err) {
        process.stderr.write(err.stderr ?? '');
        throw new Error(`build-native: ${cxx} failed on ${sources[i]}`);
      }
      if (cached !== undefined) {
        const tmp = `${cached}.${process.pid}.tmp`;
        copyFileSync(objects[i], tmp);
        renameSync(tmp, cached);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(availableParallelism(), sources.length)) }, worker));
  return objects;
}

function link(args) {
  execFileSync(cxx, args, { stdio: 'inherit', cwd: root });
}

const libObjects = await compileAll(sourcesOf('src'), ['-fvisibility=hidden'], '', ['include', 'src']);
link([...common, ...opt, '-shared', '-Wl,-z,nodelete', '-o', lib, ...libObjects]);
console.log(`build-native: ${lib}`);

// The benchmark's floor library (native/floor, not part of the published package): the bare cost
// of an asynchronous native call completed on a foreign thread, measured by `npm run bench ffi`.
if (!sanitize && existsSync(join(root, 'native', 'floor'))) {
  const floorObjects = await compileAll(sourcesOf('floor'), ['-fvisibility=hidden'], 'floor-', ['floor']);
  link([...common, ...opt, '-shared', '-Wl,-z,nodelete', '-o', join(outDir, 'libhcsfloor.so'), ...floorObjects]);
}

if (process.argv.includes('--test')) {
  // The tests link the sources directly (default visibility), so compile them again without -fvisibility.
  const testObjects = await compileAll([...sourcesOf('test'), ...sourcesOf('src')], ['-I', join(root, 'native', 'src')], 't-', ['include', 'src', 'test']);
  const exe = join(outDir, sanitize ? `hcssim-tests-${sanitize}` : 'hcssim-tests');
  link([...common, ...opt, '-o', exe, ...testObjects]);
  execFileSync(exe, [], { stdio: 'inherit', cwd: root });
}
