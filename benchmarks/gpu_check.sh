#!/usr/bin/env bash
# One short check of pluralign on a CUDA GPU (about 10 minutes on one H100; nothing downloaded):
#   1. a real-size model folder (the Qwen2.5-7B architecture, a local tokenizer, no weights),
#   2. benchmarks/vllm_throughput.py on it with load_format=dummy: vLLM offline vs our replica
#      actor vs our HTTP client against vLLM's server (tokens/s, ratios; goal >= 0.9 both),
#   3. a sweep through `--backend vllm` (a Ray replica actor on the GPU).
# Needs the CUDA build of vLLM in the Python it runs ($PYTHON, default python3), with pluralign
# installed (pip install -e '.[distributed,vllm]'). Prints the card, then each step's figures;
# the last line is one JSON object. Usage: benchmarks/gpu_check.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 PLURALIGN_OFFLINE=1 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

"$PYTHON" - <<'PY'
import sys
try:
    import torch, vllm
except ImportError as e:
    sys.exit(f"gpu_check: needs torch and the CUDA build of vLLM ({e})")
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA GPU visible to torch")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, vLLM {vllm.__version__}, torch {torch.__version__}")
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

MODEL="$OUT/qwen2.5-7b-shape"
"$PYTHON" benchmarks/real_size_model.py "$MODEL"

started=$SECONDS
"$PYTHON" benchmarks/vllm_throughput.py --model "$MODEL" --prompts 256 --max-tokens 128 \
    | tee "$OUT/throughput.txt"
echo "throughput: $((SECONDS - started)) s" >&2

started=$SECONDS
set +e
"$PYTHON" -m pluralign sweep --benchmark synthetic:S=40,R=2-4,A=5,L=5,seed=1 \
    --scorer comparative-regression --zero-shot --max-tokens 1200 --targets all \
    --backend vllm --model "$MODEL" --engine-arg load_format=dummy \
    --engine-arg max_model_len=4096 --actors 1 \
    --cache "$OUT/cache" --out "$OUT/sweep" > "$OUT/sweep.log" 2>&1
sweep_rc=$?
set -e
tail -n 15 "$OUT/sweep.log"
echo "sweep: exit $sweep_rc, $((SECONDS - started)) s" >&2

"$PYTHON" - "$OUT" "$sweep_rc" <<'PY'
import json, sys
from pathlib import Path
out, rc = Path(sys.argv[1]), int(sys.argv[2])
figures = json.loads((out / "throughput.txt").read_text().strip().splitlines()[-1])
summary = out / "sweep" / "summary.json"
counts = json.loads(summary.read_text()).get("manifest", {}).get("counts", {}) if summary.exists() else {}
print(json.dumps({
    "gpu": (out / "gpu.txt").read_text().strip(),
    "our_actor_over_vllm": figures["our_actor_over_vllm"],
    "our_http_over_vllm": figures["our_http_over_vllm"],
    "tokens_per_s": {k: v["tokens_per_s"] for k, v in figures["paths"].items()},
    "sweep": {"exit": rc, **{k: counts.get(k) for k in ("items", "completed", "failed", "failures")}},
}))
PY
