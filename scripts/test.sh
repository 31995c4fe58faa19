#!/usr/bin/env bash
# Run the test suite in two environments, as CI does; each test runs in one of them:
#   1. the core share, in .venv-core, where torch is NOT installed (proves onnxvis/ needs no framework):
#      every test but those marked `full` (--suite core);
#   2. the full share, in .venv, with the export extra (torch, torchvision), grad-cam (cam-parity) and
#      ray: the tests marked `full` alone (--suite full), the exporter, torch-parity, grad-cam and Ray tests.
#      A test module that imports one of those at its top level is marked as a whole (tests/conftest.py).
# Each environment is created on first use and reused after. Extra arguments go to pytest in both
# (-m "not slow": the quick loop; --reverse: every test in reverse order; -k: some tests).
# Model Explorer and its ONNX adapter get a third venv, .venv-explorer, that the node-data tests run as a
# subprocess: model-explorer-onnx installs a console command called onnxvis, so it never goes beside onnxvis.
# Each run lists every skip and its reason (-ra in pyproject.toml). With CI=true a skip that
# tests/skips.py does not allow for this environment fails the run (tests/conftest.py).
# With TEST_JOBS=2 the two shares run side by side (each one's output is kept apart and printed when
# both are done; the exit code is the first failing share's); the default, TEST_JOBS=1, runs them one
# after the other (see Development in the README for the times of both).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TEST_JOBS=${TEST_JOBS:-1}
# numpy's OpenBLAS with one thread: on the busy 2-core machine its threads wait on each other, and an
# EigenCAM map (an SVD of 169 x 1000) took 2.5 s of CPU instead of 0.1 (the same map, bit for bit).
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
USER_ARGS=$#
RESULTS=$(mktemp -d)
trap 'rm -rf "$RESULTS"' EXIT

pytest_in() {  # pytest_in SHARE VENV [args]: exit code 5 ("no tests ran") fails the suite, unless arguments chose the tests
  local share=$1 venv=$2; shift 2
  set +e
  "$venv/bin/python" -m pytest "$@"
  local rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    if [ "$USER_ARGS" -eq 0 ]; then
      echo "scripts/test.sh: pytest collected no tests in $venv" >&2
      return 5
    fi
    echo "scripts/test.sh: no test of this share matches the arguments in $venv"
    touch "$RESULTS/$share.empty"  # a file, not a variable: the share may run in a subshell
    return 0
  fi
  return "$rc"
}

install_into() {  # install_into VENV EXTRAS: pip install -e, skipped while pyproject.toml, the extras and the checkout are those
  local venv=$1 extras=$2 stamp="$1/.onnxvis-test-install"  # of the last install (remove the stamp to install again)
  local want
  want="$(pwd) [$extras] $("$venv/bin/python" -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
  echo "$want" > "$stamp"
}

echo "== core environment (no torch): .venv-core"
[ -x .venv-core/bin/python ] || "$PYTHON" -m venv .venv-core
install_into .venv-core dev,serve,cam
if .venv-core/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
  echo "scripts/test.sh: torch is installed in .venv-core; the core must be tested without it" >&2
  exit 1
fi
echo "== Model Explorer with its ONNX adapter, in a venv of their own (pins in tests/explorer.py): .venv-explorer"
.venv-core/bin/python tests/explorer.py
CORE_TITLE="== core share (no torch): .venv-core, --suite core"
FULL_TITLE="== full share (torch, torchvision, the serve, cam and ray extras, grad-cam): .venv, --suite full"

if [ "$TEST_JOBS" -ge 2 ]; then
  # Both venvs first, then both shares at once, each into its own log.
  echo "== full environment: .venv"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  install_into .venv dev,export,serve,cam,cam-parity,features-parity,ray
  echo "== both shares side by side (TEST_JOBS=$TEST_JOBS); their output follows when both are done"
  # Each share in a process group of its own (set -m), so that Ctrl-C or a kill of this script reaches
  # each pytest and what it started as a Ctrl-C would: pytest stops and its fixtures stop their servers.
  set -m
  pytest_in core .venv-core -q --suite core "$@" < /dev/null > "$RESULTS/core.log" 2>&1 &
  core_pid=$!
  pytest_in full .venv -q --suite full "$@" < /dev/null > "$RESULTS/full.log" 2>&1 &
  full_pid=$!
  set +m
  trap 'kill -INT -- "-$core_pid" "-$full_pid" 2>/dev/null; wait; cat "$RESULTS/core.log" "$RESULTS/full.log"; exit 130' INT TERM
  set +e
  wait "$core_pid"; core_rc=$?
  wait "$full_pid"; full_rc=$?
  set -e
  trap - INT TERM
  echo "$CORE_TITLE (exit $core_rc)"
  cat "$RESULTS/core.log"
  echo "$FULL_TITLE (exit $full_rc)"
  cat "$RESULTS/full.log"
  if [ "$core_rc" -ne 0 ]; then
    exit "$core_rc"
  elif [ "$full_rc" -ne 0 ]; then
    exit "$full_rc"
  fi
else
  echo "$CORE_TITLE"
  pytest_in core .venv-core -q --suite core "$@"
  echo "== full environment: .venv"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  install_into .venv dev,export,serve,cam,cam-parity,features-parity,ray
  echo "$FULL_TITLE"
  pytest_in full .venv -q --suite full "$@"
fi
if [ -f "$RESULTS/core.empty" ] && [ -f "$RESULTS/full.empty" ]; then
  echo "scripts/test.sh: no test matches the arguments in either environment" >&2
  exit 5
fi
