#!/usr/bin/env bash
# An emotion training run continued on a lent GPU machine (docs/training.md, "On a lent GPU").
#
# That machine has PyTorch, JAX, CUDA and Python 3.12 but no TensorFlow, no Keras and no dataset, and takes
# 64 MiB of files: it gets the code, Keras as wheels (.whl/), FER2013 packed by training.fer_bundle
# (.device/fer/) and the run's committed checkpoint (checkpoints/<name>.npz). Keras runs on JAX there; what the run
# makes lands in $OUT: the checkpoint (rewritten every epoch, so a run cut short still comes back
# where it stopped), the log, and the run's best and averaged networks without optimizer state.
#
#   training/on_lent_gpu.sh <seconds> <name> <train_emotion options...>
set -uo pipefail
seconds=$1 name=$2
shift 2
out=${OUT:-/tmp/out}
mkdir -p "$out/run"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi
# JAX, the train step and the augmentation compiled. KERAS_BACKEND=torch also runs, but Keras' PyTorch
# backend moves images one at a time in Python (rotation, shift, zoom: 180-330 ms each a batch on a CPU).
# JAX_LOG_COMPILES=1 before the script shows where start-up time goes.
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
jit=""
[ "$KERAS_BACKEND" = jax ] && jit=--jit
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
python3 -m training.fer_bundle unpack --bundle .device/fer --data-dir /tmp/fer2013 --cache-dir cache || exit 1
cp "checkpoints/$name.npz" "$out/$name.npz" 2>/dev/null || echo "no checkpoints/$name.npz: a new run"
# Stopped by `timeout` before the machine's own limit, so that the files below are still written (the
# checkpoint is replaced atomically after each epoch: a run stopped mid-epoch keeps the one before).
timeout "$seconds" python3 -m training.train_emotion --data-dir /tmp/fer2013 --run-dir /tmp/run \
    --checkpoint "$out/$name.npz" $jit "$@" 2>&1 | tee "$out/train.log"
cp /tmp/run/log.csv /tmp/run/swa.json /tmp/run/swa.keras "$out/run/" 2>/dev/null
cp /tmp/run/run.json "$out/run/" 2>/dev/null
# best.keras carries AdamW's moments (3x the weights, over what comes back from the machine): the network alone.
python3 - <<'EOF'
import os
from pathlib import Path
import keras
from training.common import export_inference_model
best = Path("/tmp/run/best.keras")
if best.exists():
    export_inference_model(keras.models.load_model(best), Path(os.environ.get("OUT", "/tmp/out")) / "run" / "best.keras")
EOF
ls -la "$out" "$out/run"
