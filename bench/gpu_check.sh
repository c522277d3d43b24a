#!/usr/bin/env bash
# One short check on a real NVIDIA GPU (issue #2, item 10): `sweepd gpus` on NVML, then a 3-clock
# custom sweep of an SD-1.5-sized random-weight model at 512x512, locking clocks (or observing when
# locking is refused), and a check that the clocks were reset. Writes everything to $OUT (or ./gpu-out).
#   bash bench/gpu_check.sh
#   SIM=1 bash bench/gpu_check.sh         # the same on the simulated H100 (tiny model, CPU): the test suite's run
set -u
export OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
SIM=${SIM:-0}
export PYTHONUNBUFFERED=1 SWEEPD_CACHE_DIR=${SWEEPD_CACHE_DIR:-/tmp/sweepd-cache}
ROOT=${ROOT:-/tmp/sweepd-gpu-root}; rm -rf "$ROOT"
log() { echo "== $*" | tee -a "$OUT/gpu_check.log"; }

if [ "$SIM" = 1 ]; then
  BACKEND=sim; GPU_FLAGS=(--backend sim); MODEL=tiny; SIZE=32; STEPS=2; DTYPE=auto
  GPU_EXTRA='sim_model = "H100"'; WARMUP=0; WINDOW_S=0.2; SETTLE_S=0
  smi() { echo "(simulated GPU: no nvidia-smi)"; }
else
  BACKEND=nvml; GPU_FLAGS=(--backend nvml); MODEL=/tmp/random-sd15; SIZE=512; STEPS=20; DTYPE=float16
  GPU_EXTRA=''; WARMUP=2; WINDOW_S=2.0; SETTLE_S=1.0
  smi() { nvidia-smi "$@"; }
fi
log "nvidia-smi"; smi --query-gpu=name,uuid,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv 2>&1 | tee -a "$OUT/gpu_check.log"
log "sweepd gpus ${GPU_FLAGS[*]}"; python3 -m sweepd gpus "${GPU_FLAGS[@]}" 2>&1 | tee -a "$OUT/gpu_check.log"
python3 -m sweepd gpus "${GPU_FLAGS[@]}" --json > "$OUT/gpus.json" 2>>"$OUT/gpu_check.log"

if [ "$SIM" != 1 ]; then
  log "building the random-weight SD-1.5-sized model"
  python3 bench/random_sd.py "$MODEL" 2>&1 | grep -v -i warn | tail -n 2 | tee -a "$OUT/gpu_check.log"
fi

# three supported clocks: the maximum, ~70 % and ~45 % of it (nearest supported)
CLOCKS=$(python3 - <<'PY'
import json
gpus = json.load(open(__import__("os").environ["OUT"] + "/gpus.json"))
d = next((g for g in gpus if g["sim_model"] in (None, "H100")), gpus[0])  # the simulated boards: the H100
mem = max(d["clocks"], key=int); fs = [f for f in d["clocks"][mem] if f >= 510]
pick = lambda x: min(fs, key=lambda f: abs(f - x))
print(",".join(str(f) for f in sorted({fs[0], pick(fs[0] * 0.7), pick(fs[0] * 0.45)}, reverse=True)))
PY
)
log "clocks: $CLOCKS"
write_req() {  # $1 = clock_control
cat > "$OUT/gpu-req.toml" <<TOML
[workload]
model = "$MODEL"
prompt = "a photograph of an astronaut riding a horse"
steps = $STEPS
width = $SIZE
height = $SIZE
dtype = "$DTYPE"
[gpu]
backend = "$BACKEND"
clock_control = "$1"
$GPU_EXTRA
[frequencies]
mode = "custom"
list = [$CLOCKS]
[protocol]
warmup = $WARMUP
trials = 3
min_window_s = $WINDOW_S
settle_s = $SETTLE_S
[images]
mode = "research"
TOML
}
write_req lock
log "sweep with clock_control = lock"
python3 -m sweepd run "$OUT/gpu-req.toml" --root "$ROOT" --job-id gpu-lock 2>&1 | tee -a "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}; job=gpu-lock
if [ "$rc" = 3 ]; then
  write_req observe; job=gpu-observe
  log "locking refused (exit 3): sweep with clock_control = observe"
  python3 -m sweepd run "$OUT/gpu-req.toml" --root "$ROOT" --job-id gpu-observe 2>&1 | tee -a "$OUT/gpu_check.log"
fi
log "after the sweep: clock lock records left: $(ls "$ROOT/state/gpu-locks"/*.json 2>/dev/null | wc -l) (want 0; a .claim file is a released flock)"
smi -q -d CLOCK,PERFORMANCE 2>&1 | grep -iE "SM|Graphics|Locked|Idle|Applications|Active" | head -n 20 | tee -a "$OUT/gpu_check.log"
cp "$ROOT/results/job_$job/"{trials.csv,summary.csv,sweep.json} "$OUT/" 2>/dev/null
ls "$ROOT/images/job_$job"/*/ 2>/dev/null | head -n 5 | tee -a "$OUT/gpu_check.log"
