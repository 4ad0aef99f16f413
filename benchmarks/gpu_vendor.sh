#!/usr/bin/env bash
# lucent for benchmarks/gpu_check.sh's lucent bar, on a machine with PyPI: a GPU machine has no network and no lucent.
#   bash benchmarks/gpu_vendor.sh        (then carry .gpu-vendor with the device command; git ignores it)
# Pure-Python wheels only, unpacked, never installed: torch-lucent 0.1.8, the kornia it pins (0.4.1), decorator and
# tqdm (its imports); stubs/ holds an empty IPython.display, which lucent imports and the benchmark never calls
# (stubs/ goes last on the path, so a real IPython wins). About 2 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dest=.gpu-vendor
rm -rf "$dest" && mkdir -p "$dest/wheels" "$dest/site" "$dest/stubs/IPython"
$PY -m pip download --quiet --no-deps --only-binary :all: -d "$dest/wheels" \
  torch-lucent==0.1.8 kornia==0.4.1 decorator tqdm
for wheel in "$dest"/wheels/*.whl; do
  $PY -m zipfile -e "$wheel" "$dest/site"
done
rm -rf "$dest/wheels"
echo '"""Stand-in: lucent imports IPython.display at import time; the benchmark never shows an image."""' \
  > "$dest/stubs/IPython/__init__.py"
cp "$dest/stubs/IPython/__init__.py" "$dest/stubs/IPython/display.py"
PYTHONPATH=$PWD/$dest/site:${PYTHONPATH:-}:$PWD/$dest/stubs $PY -c \
  "from lucent.optvis import objectives, param, render, transform; print('lucent ready in $dest:', render.__file__)"
du -sh "$dest"
