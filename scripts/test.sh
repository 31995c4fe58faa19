#!/usr/bin/env bash
# Run the whole test suite twice, as CI does:
#   1. the core, in .venv-core, where torch is NOT installed (proves onnxvis/ needs no framework);
#   2. everything, in .venv, with the export extra (torch, torchvision): exporter and torch-parity tests;
#      also the serve, cam and ray extras (the Ray engine tests skip in .venv-core, where ray is not installed).
# Model Explorer and its ONNX adapter get a third venv, .venv-explorer, that the node-data tests run as a
# subprocess: model-explorer-onnx installs a console command called onnxvis, so it never goes beside onnxvis.
# Each environment is created on first use and reused after. Extra arguments go to pytest
# (-m "not slow": the quick loop; --reverse: every test in reverse order).
# Each run lists every skip and its reason (-ra in pyproject.toml). With CI=true a skip that
# tests/skips.py does not allow for this environment fails the run (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

pytest_in() {  # pytest_in VENV [args]: exit code 5 ("no tests ran") counts as a failure of the suite
  local venv=$1; shift
  set +e
  "$venv/bin/python" -m pytest "$@"
  local rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    echo "scripts/test.sh: pytest collected no tests in $venv" >&2
  fi
  return "$rc"
}

echo "== core environment (no torch): .venv-core"
[ -x .venv-core/bin/python ] || "$PYTHON" -m venv .venv-core
.venv-core/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,serve,cam]'
if .venv-core/bin/python -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
  echo "scripts/test.sh: torch is installed in .venv-core; the core must be tested without it" >&2
  exit 1
fi
echo "== Model Explorer with its ONNX adapter, in a venv of their own (pins in tests/explorer.py): .venv-explorer"
.venv-core/bin/python tests/explorer.py
pytest_in .venv-core -q "$@"

echo "== full environment (torch, torchvision, the serve, cam and ray extras, grad-cam): .venv"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev,export,serve,cam,cam-parity,ray]'
pytest_in .venv -q "$@"
