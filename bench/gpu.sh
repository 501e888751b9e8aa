#!/usr/bin/env bash
# GPU readiness in one run (<= 12 minutes on one GPU): a smoke sweep on the device to its leaderboard (4 trials, AMP,
# the test-split pass included: a sweep that trains on CUDA must end with leaderboard.csv and test scores), then
# training-step speed of every model family at 128² and 256² with AMP off and on, then 1 / 2 / 4 trials packed on
# the one GPU (what a fractional `resources: {gpu: 0.25}` sweep does: N processes sharing the device), as
# aggregate steps/s.
#
#   bash bench/gpu.sh                      # on a GPU node: writes bench-gpu.json (and prints it as the last line)
#   DEVICE=cpu SIZES=16 PACK_SIZE=16 STEP_ARGS="--layers 1 --hidden 8" bash bench/gpu.sh   # the same path on CPU, tiny
#   SWEEP_LIMIT=seconds for the smoke sweep (default 240; it makes data/synthetic.zarr first if that is missing)
#
# Each measurement runs under its own time limit; one that fails or times out is recorded as an error, the rest
# still run. Families: those bench/step.py accepts with --model (all of bubbles' registry), else its one model.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
DEVICE="${DEVICE:-cuda}"
SIZES="${SIZES:-128 256}"
PACK_SIZE="${PACK_SIZE:-128}"
OUT="${OUT:-bench-gpu.json}"
STEP_ARGS="${STEP_ARGS:-}"        # e.g. "--layers 1 --hidden 8" for the CPU check
LIMIT="${LIMIT:-75}"             # seconds per measurement: 3 families + 3 packing runs stay under 8 minutes
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

if "$PY" bench/step.py --help 2>/dev/null | grep -q -- "--model"; then
  FAMILIES="${FAMILIES:-$("$PY" -c 'from bubbles.models.registry import MODELS; print(" ".join(sorted(MODELS)))')}"
else
  FAMILIES="default"             # bench/step.py without --model times the ConvLSTM only
fi
"$PY" -c 'import torch, sys; d = sys.argv[1]; ok = d == "cpu" or torch.cuda.is_available(); print(f"torch {torch.__version__}, device {d}: " + (torch.cuda.get_device_name() if d == "cuda" and ok else "cpu" if ok else "NOT AVAILABLE")); sys.exit(0 if ok else 3)' "$DEVICE" || { echo "error: no $DEVICE device" >&2; exit 3; }

# One measurement: run it with a time limit, keep its JSON last line (or the error) under a key.
measure() {
  local key="$1"; shift
  echo "== $key: $*" >&2
  if timeout "$LIMIT" "$@" >"$work/$key.log" 2>&1; then
    tail -n 1 "$work/$key.log" >"$work/$key.json"
  else
    local rc=$?
    printf '{"error": "exit %s", "tail": %s}\n' "$rc" "$(tail -n 3 "$work/$key.log" | "$PY" -c 'import json,sys; print(json.dumps(sys.stdin.read()))')" >"$work/$key.json"
  fi
  tail -n 2 "$work/$key.log" | head -n 1 >&2
}

# The smoke sweep on the device: search_spaces/smoke.yaml cut to 4 trials, each on the device (a quarter GPU each).
SWEEP_LIMIT="${SWEEP_LIMIT:-240}"
"$PY" - "$work" "$DEVICE" <<'EOF'
import sys
from pathlib import Path
import yaml
work, device = Path(sys.argv[1]), sys.argv[2]
space = yaml.safe_load(Path("search_spaces/smoke.yaml").read_text())
space["fixed"] |= {"device": device, "amp": "auto"}
space["tune"] |= {"num_samples": 4, "max_concurrent": 2, "resources": {"cpu": 1, "gpu": 0.25 if device == "cuda" else 0}}
space["tracking"] = {"experiment": "bench-gpu"}
space["tune"].pop("reproducible", None)  # the normal mode: deterministic torch would refuse CUDA ops it cannot repeat
(work / "smoke-gpu.yaml").write_text(yaml.safe_dump(space))
EOF
echo "== smoke_sweep: 4 trials on $DEVICE" >&2
MLFLOW_TRACKING_URI="sqlite:///$work/mlflow.db" RAY_AUTH_MODE=disabled timeout "$SWEEP_LIMIT" \
  "$PY" cli.py sweep "$work/smoke-gpu.yaml" --name gpu-smoke --storage "$work/sweeps" >"$work/smoke_sweep.log" 2>&1
rc=$?
"$PY" - "$work" "$rc" >"$work/smoke_sweep.json" <<'EOF'
import csv, json, sys
from pathlib import Path
work, rc = Path(sys.argv[1]), int(sys.argv[2])
board = work / "sweeps" / "gpu-smoke" / "leaderboard.csv"
rows = list(csv.DictReader(board.open())) if board.exists() else []
tested = [r for r in rows if any(k.startswith("test_") and r[k] not in ("", "nan") for k in r)]
tail = (work / "smoke_sweep.log").read_text()[-400:]
print(json.dumps({"exit": rc, "leaderboard": board.exists(), "trials": len(rows), "test_scored": len(tested),
                  **({} if board.exists() and rc == 0 else {"tail": tail})}))
EOF
cat "$work/smoke_sweep.json" >&2

for family in $FAMILIES; do
  model=(); [ "$family" != default ] && model=(--model "$family")
  measure "step_${family}" "$PY" bench/step.py --device "$DEVICE" --sizes $SIZES --amp both --repeats 3 $STEP_ARGS "${model[@]}"
done

# Packing: N concurrent trial-like processes on the same device; each reports its own steps/s.
for n in 1 2 4; do
  echo "== pack_$n: $n processes at ${PACK_SIZE}²" >&2
  pids=()
  for i in $(seq 1 "$n"); do
    timeout "$LIMIT" "$PY" bench/step.py --device "$DEVICE" --sizes "$PACK_SIZE" --amp on --repeats 5 $STEP_ARGS \
      >"$work/pack_${n}_$i.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid"; done
  "$PY" - "$work" "$n" "$PACK_SIZE" >"$work/pack_$n.json" <<'EOF'
import json, sys
from pathlib import Path
work, n, size = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rates = []
for i in range(1, n + 1):
    lines = (work / f"pack_{n}_{i}.log").read_text().strip().splitlines()
    try:
        last = json.loads(lines[-1])
        rates.append(next(v for k, v in last.items() if k.startswith(f"steps_per_s_{size}_amp")))
    except (IndexError, ValueError, StopIteration):
        print(json.dumps({"error": "a packed process failed", "tail": lines[-3:]}))
        sys.exit(0)
print(json.dumps({"processes": n, "steps_per_s_each": rates, "steps_per_s_total": round(sum(rates), 3)}))
EOF
  cat "$work/pack_$n.json" >&2
done

"$PY" - "$work" "$DEVICE" "$OUT" <<'EOF'
import json, sys
from pathlib import Path
work, device, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
result = {"device": device}
for f in sorted(work.glob("*.json")):
    try:
        result[f.stem] = json.loads(f.read_text() or "null")
    except ValueError:
        result[f.stem] = {"error": "no JSON line", "text": f.read_text()[-300:]}
packs = {n: result.get(f"pack_{n}", {}).get("steps_per_s_total") for n in (1, 2, 4)}
if packs[1]:
    result["packing_throughput_vs_1"] = {n: round(v / packs[1], 2) for n, v in packs.items() if v}
Path(out).write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps(result))
EOF
