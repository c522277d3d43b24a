#!/usr/bin/env bash
# Every SD generation on a real NVIDIA GPU (issue #25): random-weight models of SDXL's and SD3.5-medium's size
# (bench/random_sd.py --family), each swept over 6 clocks at 1024x1024, J/image and s/image printed per clock.
# One prepared run, under 10 minutes on an H100: builds (fp16) ~3 min, sweeps ~2 min each. Writes to $OUT.
#   bash bench/gpu_families.sh
#   SMOKE=1 bash bench/gpu_families.sh    # the same steps on the simulated H100 with toy-width models (CPU, seconds)
set -u
export OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
SMOKE=${SMOKE:-0}
export PYTHONUNBUFFERED=1 SWEEPD_CACHE_DIR=${SWEEPD_CACHE_DIR:-/tmp/sweepd-cache}
ROOT=${ROOT:-/tmp/sweepd-families-root}; rm -rf "$ROOT"
MODELS=${MODELS:-/tmp/sweepd-families}
log() { echo "== $*" | tee -a "$OUT/gpu_families.log"; }
if [ "$SMOKE" = 1 ]; then
  BACKEND=sim; GPU_EXTRA='sim_model = "H100"'; SIZE=64; STEPS=2; WINDOW_S=0.2; SMOKE_FLAG=--smoke; DTYPE=auto
  CLOCKS="1785, 1200, 810"  # three: the smoke checks the steps, not the curve
else
  BACKEND=nvml; GPU_EXTRA=''; SIZE=1024; STEPS=10; WINDOW_S=2.0; SMOKE_FLAG=; DTYPE=float16
  CLOCKS=$(python3 - <<'PY'
import json, subprocess
gpus = json.loads(subprocess.run(["python3", "-m", "sweepd", "gpus", "--backend", "nvml", "--json"],
                                 capture_output=True, text=True, check=True).stdout)
d = gpus[0]; mem = max(d["clocks"], key=int); fs = [f for f in d["clocks"][mem] if f >= 510]
pick = lambda x: min(fs, key=lambda f: abs(f - x))
print(", ".join(str(f) for f in sorted({pick(fs[0] * r) for r in (1, 0.9, 0.8, 0.7, 0.6, 0.5)}, reverse=True)))
PY
)
fi
log "clocks: $CLOCKS"
for family in sdxl sd3; do
  model="$MODELS/$family$SMOKE_FLAG"
  if [ ! -f "$model/model_index.json" ]; then
    log "building a random-weight $family"
    python3 bench/random_sd.py "$model" --family "$family" $SMOKE_FLAG 2>&1 | grep -v -i warn | tail -n 1 | tee -a "$OUT/gpu_families.log"
  fi
  cat > "$OUT/$family.toml" <<TOML
[workload]
model = "$model"
prompt = "a lighthouse at dusk"
steps = $STEPS
width = $SIZE
height = $SIZE
dtype = "$DTYPE"
[gpu]
backend = "$BACKEND"
$GPU_EXTRA
[frequencies]
mode = "custom"
list = [$CLOCKS]
[protocol]
warmup = 1
trials = 2
min_window_s = $WINDOW_S
settle_s = 0.5
[images]
mode = "benchmark"
TOML
  log "sweep: $family, 6 clocks, ${SIZE}x${SIZE}, $STEPS steps"
  python3 -m sweepd run "$OUT/$family.toml" --root "$ROOT" --job-id "fam-$family" 2>&1 | tail -n 25 | tee -a "$OUT/gpu_families.log"
  cp "$ROOT/results/job_fam-$family/summary.csv" "$OUT/$family-summary.csv" 2>/dev/null
  python3 - "$ROOT/results/job_fam-$family/summary.csv" "$family" <<'PY' | tee -a "$OUT/gpu_families.log"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
for r in rows:
    print(f"{sys.argv[2]} {r['freq_mhz']} MHz: {float(r['j_per_image_mean']):.1f} J/image, {float(r['s_per_image_mean']):.3f} s/image")
PY
done
log "done"
