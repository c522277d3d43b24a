#!/usr/bin/env bash
# Which knob saves more on a real NVIDIA GPU (issue #29): random-weight SD-1.5 (bench/random_sd.py) at batch 4,
# 512x512, swept over 6 locked clocks and over 6 power limits (the board's maximum down to near its minimum, the
# clock left to the firmware), then `sweepd compare` of the two: each objective's winner with a 95 % CI, both
# time-energy frontiers (frontiers.png/.svg), and how much a capped GPU's clock moves (sm_clock_std_mhz).
# Needs root (NVML power limits and locked clocks) or zeusd. One prepared run, under 10 minutes on an H100.
#   bash bench/gpu_knobs.sh
#   SMOKE=1 bash bench/gpu_knobs.sh    # the same steps on the simulated H100 with the tiny model, 3 of each (CPU)
set -u
export OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
SMOKE=${SMOKE:-0}
export PYTHONUNBUFFERED=1 SWEEPD_CACHE_DIR=${SWEEPD_CACHE_DIR:-/tmp/sweepd-cache}
ROOT=${ROOT:-/tmp/sweepd-knobs-root}; rm -rf "$ROOT"
MODEL=${MODEL:-/tmp/sweepd-knobs-sd15}
log() { echo "== $*" | tee -a "$OUT/gpu_knobs.log"; }
if [ "$SMOKE" = 1 ]; then  # the script's steps, not the curve: the built-in tiny model, 3 clocks and 3 limits
  BACKEND=sim; GPU_EXTRA='sim_model = "H100"'; SIZE=32; STEPS=2; WINDOW_S=0.2; DTYPE=auto; MODEL=tiny; N=3
else
  BACKEND=nvml; GPU_EXTRA=''; SIZE=512; STEPS=20; WINDOW_S=2.0; DTYPE=float16; N=6
fi
# N clocks from the highest down to half of it, and N limits from the board's maximum down to its minimum (+10 %)
read -r CLOCKS LIMITS < <(python3 - "$BACKEND" "$N" <<'PY'
import json, subprocess, sys
backend, n = sys.argv[1], int(sys.argv[2])
args = ["python3", "-m", "sweepd", "gpus", "--backend", backend, "--json"]
d = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
d = next((g for g in d if "H100" in g["name"]), d[0]) if backend == "sim" else d[0]
mem = max(d["clocks"], key=int); fs = [f for f in d["clocks"][mem] if f >= 510]
pick = lambda x: min(fs, key=lambda f: abs(f - x))
clocks = sorted({pick(fs[0] * (1 - 0.5 * k / (n - 1))) for k in range(n)}, reverse=True)
p = d["power_limit_w"]; hi, lo = p["max_w"], p["min_w"] * 1.1
limits = sorted({int(round(hi - (hi - lo) * k / (n - 1))) for k in range(n)}, reverse=True)
print(",".join(map(str, clocks)), ",".join(map(str, limits)))
PY
)
log "clocks: $CLOCKS; power limits: $LIMITS"
if [ "$MODEL" != tiny ] && [ ! -f "$MODEL/model_index.json" ]; then
  log "building a random-weight SD-1.5"
  python3 bench/random_sd.py "$MODEL" 2>&1 | grep -v -i warn | tail -n 1 | tee -a "$OUT/gpu_knobs.log"
fi
request() {  # name knob-table
  cat > "$OUT/$1.toml" <<TOML
job_id = "$1"
[workload]
model = "$MODEL"
prompt = "a lighthouse at dusk"
steps = $STEPS
width = $SIZE
height = $SIZE
batch_size = 4
dtype = "$DTYPE"
[gpu]
backend = "$BACKEND"
$GPU_EXTRA
$2
[protocol]
warmup = 4
trials = 3
min_window_s = $WINDOW_S
settle_s = 1.0
[images]
mode = "benchmark"
TOML
}
request knob-clock "[frequencies]
mode = \"custom\"
list = [$CLOCKS]"
request knob-power "[power]
limits = [$LIMITS]"
for job in knob-clock knob-power; do
  log "sweep: $job"
  python3 -m sweepd run "$OUT/$job.toml" --root "$ROOT" 2>&1 | tail -n 16 | tee -a "$OUT/gpu_knobs.log"
  cp "$ROOT/results/job_$job/summary.csv" "$OUT/$job-summary.csv" 2>/dev/null
  cp "$ROOT/results/job_$job/trials.csv" "$OUT/$job-trials.csv" 2>/dev/null
done
log "compare: clock (A) vs power (B)"
python3 -m sweepd compare knob-clock knob-power --root "$ROOT" 2>&1 | tee -a "$OUT/gpu_knobs.log"
python3 -m sweepd compare knob-clock knob-power --root "$ROOT" --json > "$OUT/compare.json" 2>>"$OUT/gpu_knobs.log"
cp "$ROOT"/results/compare_knob-clock_vs_knob-power/frontiers.* "$OUT/" 2>/dev/null
python3 -m sweepd gpus --backend "$BACKEND" --json > "$OUT/gpus-after.json" 2>/dev/null  # the default limit is back
log "done"
