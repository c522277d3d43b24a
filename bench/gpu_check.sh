#!/usr/bin/env bash
# One short check on a real NVIDIA GPU (issue #2, item 10): `sweepd gpus` on NVML, then a 3-clock
# custom sweep of an SD-1.5-sized random-weight model at 512x512, locking clocks (or observing when
# locking is refused), and a check that the clocks were reset. Writes everything to $OUT (or ./gpu-out).
#   bash bench/gpu_check.sh
set -u
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/daemon${PYTHONPATH:+:$PYTHONPATH}" SWEEPD_CACHE_DIR=/tmp/sweepd-cache
ROOT=/tmp/sweepd-gpu-root; rm -rf "$ROOT"
log() { echo "== $*" | tee -a "$OUT/gpu_check.log"; }

log "nvidia-smi"; nvidia-smi --query-gpu=name,uuid,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv 2>&1 | tee -a "$OUT/gpu_check.log"
log "sweepd gpus --backend nvml"; python3 -m sweepd gpus --backend nvml 2>&1 | tee -a "$OUT/gpu_check.log"
python3 -m sweepd gpus --backend nvml --json > "$OUT/gpus.json" 2>>"$OUT/gpu_check.log"

log "building the random-weight SD-1.5-sized model"
python3 bench/random_sd.py /tmp/random-sd15 2>&1 | grep -v -i warn | tail -n 2 | tee -a "$OUT/gpu_check.log"

# three supported clocks: the maximum, ~70 % and ~45 % of it (nearest supported)
CLOCKS=$(python3 - <<'PY'
import json
d = json.load(open(__import__("os").environ["OUT"] + "/gpus.json"))[0]
mem = max(d["clocks"], key=int); fs = [f for f in d["clocks"][mem] if f >= 510]
pick = lambda x: min(fs, key=lambda f: abs(f - x))
print(",".join(str(f) for f in sorted({fs[0], pick(fs[0] * 0.7), pick(fs[0] * 0.45)}, reverse=True)))
PY
)
log "clocks: $CLOCKS"
write_req() {  # $1 = clock_control
cat > /tmp/gpu-req.toml <<TOML
[workload]
model = "/tmp/random-sd15"
prompt = "a photograph of an astronaut riding a horse"
steps = 20
width = 512
height = 512
dtype = "float16"
[gpu]
backend = "nvml"
clock_control = "$1"
[frequencies]
mode = "custom"
list = [$CLOCKS]
[protocol]
warmup = 2
trials = 3
min_window_s = 2.0
settle_s = 1.0
[images]
mode = "research"
TOML
}
write_req lock
log "sweep with clock_control = lock"
python3 -m sweepd run /tmp/gpu-req.toml --root "$ROOT" --job-id gpu-lock 2>&1 | tee -a "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}; job=gpu-lock
if [ "$rc" = 3 ]; then
  write_req observe; job=gpu-observe
  log "locking refused (exit 3): sweep with clock_control = observe"
  python3 -m sweepd run /tmp/gpu-req.toml --root "$ROOT" --job-id gpu-observe 2>&1 | tee -a "$OUT/gpu_check.log"
fi
log "after the sweep: lock records left: $(ls "$ROOT/state/gpu-locks" 2>/dev/null | wc -l)"
nvidia-smi -q -d CLOCK,PERFORMANCE 2>&1 | grep -iE "SM|Graphics|Locked|Idle|Applications|Active" | head -n 20 | tee -a "$OUT/gpu_check.log"
cp "$ROOT/results/job_$job/"{trials.csv,summary.csv,sweep.json} "$OUT/" 2>/dev/null
ls "$ROOT/images/job_$job"/*/ 2>/dev/null | head -n 5 | tee -a "$OUT/gpu_check.log"
