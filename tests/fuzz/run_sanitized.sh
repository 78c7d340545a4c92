#!/usr/bin/env bash
# Coverage-guided fuzzing of both targets with fcnn._core under AddressSanitizer and UBSan.
#
#   tests/fuzz/run_sanitized.sh [RUNS]      each target for RUNS executions (default 100000)
#
# Why not the gcc build of .ci/sanitize: with gcc's libasan preloaded, libasan supplies the
# __sanitizer_cov_* hooks that atheris feeds, libFuzzer sees no coverage ("no interesting
# inputs were found"), the corpus collapses to one input and the run is blind. atheris
# ships asan_with_fuzzer.so, clang's ASan runtime with libFuzzer linked in; the core must
# then be compiled by clang (-fsanitize=address,undefined,fuzzer-no-link) so that both
# sides use the same runtime. Needs clang and libomp: `apt-get install clang libomp-dev`.
#
# The virtual environment ($TMPDIR/fcnn-fuzz-asan/venv), the corpus (…/corpus, grown by
# the run) and any crashing input (…/crashes) are kept; a second run continues the corpus.
# run.sh does the fuzzing; this script builds what it runs against.
set -euo pipefail
runs="${1:-100000}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${TMPDIR:-/tmp}/fcnn-fuzz-asan"
command -v clang >/dev/null || { echo "run_sanitized.sh: needs clang (apt-get install clang libomp-dev)" >&2; exit 2; }

# A clean copy: an in-tree build would reuse uninstrumented objects from build/.
rm -rf "$work/src"
mkdir -p "$work/src" "$work/crashes"
git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 tar -cf -) | tar -xf - -C "$work/src"

if [ ! -x "$work/venv/bin/python" ]; then
    python3 -m venv "$work/venv"
fi
# shellcheck disable=SC1091
source "$work/venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet setuptools wheel "numpy>=2" "scipy-openblas32>=0.3.27" \
    "atheris>=2.3" tqdm joblib threadpoolctl
sanitizers="-fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all"
(cd "$work/src" && CC=clang LDSHARED="clang -shared" \
    CFLAGS="$sanitizers -fno-omit-frame-pointer -g" LDFLAGS="$sanitizers" \
    python -m pip install --quiet --no-deps --no-build-isolation --no-cache-dir --force-reinstall .)

runtime="$(python -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')"
[ -f "$runtime" ] || { echo "run_sanitized.sh: this atheris has no asan_with_fuzzer.so" >&2; exit 2; }
export LD_PRELOAD="$runtime"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

# The same loop as CI's minute of fuzzing, with an execution budget instead of a time.
FCNN_FUZZ_DIR="$work" FCNN_FUZZ_RUNS="$runs" "$work/src/tests/fuzz/run.sh"
