#!/usr/bin/env bash
# Installs the whole stack into .venv on a fresh machine (Python 3.11, CPU or GPU).
# pip runs --isolated so that no machine-wide find-links (e.g. a local torch+cpu wheel that
# torchvision cannot import against) or extra index is ever consulted.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --isolated --disable-pip-version-check "$@"; }
pip install -q --upgrade pip 'setuptools<81' wheel
if [ -f envs/requirements.lock ]; then
  pip install -q -r envs/requirements.lock
else
  pip install -q -r envs/requirements.in
fi
# CGRSeg uses no compiled mmcv op, but mmseg 0.x imports mmcv.ops; a CPU-ops build serves GPU nodes too.
if ! .venv/bin/python -c 'import mmcv.ops' 2>/dev/null; then
  MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    pip install --no-build-isolation 'mmcv-full==1.7.2'
fi
pip install -q 'mmsegmentation==0.30.0'
pip install -q --no-deps --no-build-isolation -e .
# Headless Chromium opens the report in tests/workflow/test_report_browser.py (skipped, saying why, without it).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; }; } >/dev/null \
      || echo "note: could not install chromium; the report's browser test will be skipped" >&2
  else
    echo "note: no chromium (as root: apt-get install chromium); the report's browser test will be skipped" >&2
  fi
fi
.venv/bin/python -c 'import torch, mmcv, mmseg, cgrseg; print("stack ok: torch", torch.__version__, "mmcv", mmcv.__version__, "mmseg", mmseg.__version__)'
