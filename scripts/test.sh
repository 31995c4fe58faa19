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
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EMPTY_SHARES=0

pytest_in() {  # pytest_in VENV [args]: exit code 5 ("no tests ran") fails the suite, unless arguments chose the tests
  local venv=$1; shift
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
    EMPTY_SHARES=$((EMPTY_SHARES + 1))
    return 0
  fi
  return "$rc"
}
USER_ARGS=$#

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
pytest_in .venv-core -q --suite core "$@"

echo "== full environment (torch, torchvision, the serve, cam and ray extras, grad-cam): .venv"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
install_into .venv dev,export,serve,cam,cam-parity,features-parity,ray
pytest_in .venv -q --suite full "$@"
if [ "$EMPTY_SHARES" -eq 2 ]; then
  echo "scripts/test.sh: no test matches the arguments in either environment" >&2
  exit 5
fi
