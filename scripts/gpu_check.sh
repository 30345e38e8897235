#!/usr/bin/env bash
# The prepared GPU check, one command on a CUDA machine (issue 3): LoRA vs QLoRA training of a
# Phi-3-mini-shaped random model (conf/model/bench_phi3_mini.yaml, no download), 20 steps at sequence
# length 256, peak memory and tokens/second of each, into $RESULTS/train_memory.json.
#
#   here:        bash scripts/gpu_wheels.sh                 # .whl/: what the GPU image lacks
#   GPU machine: bash scripts/gpu_check.sh                  # with .whl/ beside it
#   dry run:     MODEL=tiny_phi3 HW=cpu PY=.venv/bin/python bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
MODEL=${MODEL:-bench_phi3_mini}  # a conf/model entry: Phi-3-mini's shape, random weights
HW=${HW:-cuda}
RESULTS=${RESULTS:-${OUT:-bench}}
METHODS=${METHODS:-lora qlora}
STEPS=${STEPS:-20}
SEQ_LEN=${SEQ_LEN:-256}
WHEELS=${WHEELS:-.whl}
SITE=${SITE:-/tmp/slmtune-site}
export PYTHONUNBUFFERED=1  # offline and quiet: slmtune.environment, in the check itself

if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
    export PYTHONPATH="$SITE"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PY'
import bitsandbytes, peft, torch, transformers
print(f"torch {torch.__version__} (cuda {torch.version.cuda}), transformers {transformers.__version__}, "
      f"peft {peft.__version__}, bitsandbytes {bitsandbytes.__version__}")
PY
mkdir -p "$RESULTS"
"$PY" -m slmtune.bench.train_memory --model "$MODEL" --hw "$HW" --methods $METHODS --steps "$STEPS" --seq-len "$SEQ_LEN" \
    --out "$RESULTS/train_memory.json"
