#!/usr/bin/env bash
# The main job on a fresh machine: install onnxvis with the exporter into .venv, export AlexNet,
# draw its kernels and the conv1 feature maps of a photo, and say where the PNGs are.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[export]'
onnxvis=.venv/bin/onnxvis

set +e
"$onnxvis" export alexnet
rc=$?
set -e
if [ "$rc" -eq 2 ]; then
  cat >&2 <<'MSG'

  ************************************************************************************
  *  Pretrained AlexNet weights could not be had (offline and not in the torch hub   *
  *  cache). FALLING BACK TO RANDOM WEIGHTS: the pictures below show an UNTRAINED     *
  *  network. Put alexnet-owt-7be5be79.pth in $TORCH_HOME/hub/checkpoints/ or run     *
  *  'onnxvis export alexnet --weights PATH' for trained kernels.                     *
  ************************************************************************************

MSG
  "$onnxvis" export alexnet --weights random
elif [ "$rc" -ne 0 ]; then
  exit "$rc"
fi

"$onnxvis" kernels models/alexnet.onnx
"$onnxvis" kernels models/alexnet.onnx --layers 0,1 --split > /dev/null
"$onnxvis" fmaps models/alexnet.onnx
echo
echo "Done. The PNGs are in onnxvis-out/alexnet/ (per-output-channel grids of conv1 and conv2 in its *_split/ folders)."
