#!/usr/bin/env bash
# Runs the native HCS simulator under AddressSanitizer (and UBSan-free, leak-checked C++ tests).
#
#   bash scripts/asan.sh
#
# Part 1 builds build/native/libhcssim-address.so and build/native/hcssim-tests-address with
# -fsanitize=address and runs the C++ tests; any ASan report fails the script.
# Part 2 (FFI integration suite under ASan) is a separate block below.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "$(uname -s)" == MINGW* || "$(uname -s)" == CYGWIN* || "${OS:-}" == "Windows_NT" ]]; then
  echo "asan: not supported on Windows hosts"; exit 0
fi

LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/hcssim-asan.XXXXXX")"
trap 'rm -rf "$LOG_DIR"' EXIT

check_no_reports() {
  # ASan writes its reports to log_path.<pid>; any file there is a failure.
  if compgen -G "$LOG_DIR/asan.*" > /dev/null; then
    echo "asan: AddressSanitizer reported errors:" >&2
    cat "$LOG_DIR"/asan.* >&2
    exit 1
  fi
}

# ---- Part 1: C++ tests under ASan (leak detection on) ---------------------------------------
echo "asan: building the ASan variant and the C++ tests"
ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:log_path=$LOG_DIR/asan" \
  HCSSIM_SANITIZE=address node scripts/build-native.mjs --test
check_no_reports
echo "asan: C++ tests clean"

# ---- Part 2: the FFI integration suites under ASan ------------------------------------------
# The compiled tests load the ASan build of the simulator through koffi (UVM_HCS_LIBRARY), with the
# ASan runtime preloaded into node (and into the child processes the suites start). Leak detection
# is off here: node itself is not built for it.
[[ -d build/test/integration ]] || npm run build
echo "asan: FFI integration suites against build/native/libhcssim-address.so"
ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:log_path=$LOG_DIR/asan" \
  LD_PRELOAD="$(g++ -print-file-name=libasan.so)" \
  UVM_HCS_LIBRARY="$PWD/build/native/libhcssim-address.so" \
  npx mocha --no-config --require build/test/setup.js --reporter test/support/reporter.cjs --timeout 60000 \
    build/test/integration/hcs-*.test.js build/test/integration/devices-*.test.js \
    build/test/integration/containers-*.test.js build/test/integration/host-layers.test.js build/test/integration/load.test.js
check_no_reports
echo "asan: FFI integration suites clean"
