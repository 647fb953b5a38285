#!/usr/bin/env bash
# The short-step overhead figures on an accelerator, in one run.
#
#     bash benchmarks/gpu.sh OUT_DIR [ROUNDS] [BACKENDS] [STEPS]
#
# For each backend of BACKENDS (default "tensorflow jax torch") that is
# installed: `overhead.py --suite averaging` and `--suite monitors` on both
# yardsticks (`mlp128`, `mlp`), then `ema_backends.py --model mlp128`
# (`every=1` against Keras' `use_ema`, on a fresh model per repeat). Each
# backend's tables go to OUT_DIR/<backend>.md, each one headed by the device
# it ran on (`harness.header`); what a run printed on stderr goes to
# OUT_DIR/<backend>.log. A run that fails or outlasts its time limit
# (GPU_BENCH_TIMEOUT seconds, default 150) is noted in the table file and
# the others go on.
#
# ROUNDS (default 7) and STEPS (default 100, at least 5: `SnapshotEnsemble`
# takes five snapshots an epoch) size every run; the smallest,
# `bash benchmarks/gpu.sh OUT_DIR 1 jax 5`, checks the script itself in a
# few minutes on a CPU.
set -u

out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR [ROUNDS] [BACKENDS] [STEPS]}
rounds=${2:-7}
backends=${3:-tensorflow jax torch}
steps=${4:-100}
limit=${GPU_BENCH_TIMEOUT:-150}
python=${PYTHON:-python3}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"

# JAX and TensorFlow take the device's memory as they need it, not all at
# once: each run is a process of its own, one after another.
export XLA_PYTHON_CLIENT_PREALLOCATE=false TF_FORCE_GPU_ALLOW_GROWTH=true
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

run() {  # run BACKEND TABLE_FILE SCRIPT ARGS...: one timed run, its table
  local backend=$1 table=$2
  shift 2
  echo "== $*" >>"$table"
  if ! KERAS_BACKEND=$backend timeout "$limit" "$python" "$here/$1" "${@:2}" \
      >>"$table" 2>>"${table%.md}.log"; then
    echo "(failed or ran past ${limit} s: see ${table%.md}.log)" >>"$table"
  fi
  echo >>"$table"
}

for backend in $backends; do
  case $backend in
    tensorflow | jax | torch) ;;
    *) echo "unknown backend: $backend (tensorflow, jax or torch)" >&2; exit 2 ;;
  esac
done
for backend in $backends; do
  if ! "$python" -c "import $backend" 2>/dev/null; then
    echo "$backend: not installed, skipped"
    continue
  fi
  table="$out/$backend.md"
  : >"$table"
  : >"${table%.md}.log"
  for model in mlp128 mlp; do
    for suite in averaging monitors; do
      run "$backend" "$table" overhead.py --suite "$suite" --model "$model" \
        --rounds "$rounds" --steps "$steps"
    done
  done
  run "$backend" "$table" ema_backends.py --model mlp128 \
    --repeats "$rounds" --steps "$steps"
  echo "$backend: $table"
done
