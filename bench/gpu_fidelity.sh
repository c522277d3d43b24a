#!/usr/bin/env bash
# How trustworthy the answer is on a real GPU (issue #12, item 7): one run, well under 10 minutes.
# Sweeps 8 clocks (the highest down to ~45 % of it) twice with the sequential protocol (3-5 trials per
# clock to a 2 % CI, the baseline measured again at the end), at batch 1 and at batch 4, of an
# SD-1.5-sized random-weight model at 512x512, 20 steps, fp16; then prints both EDP optima and whether
# each lies in the other's equivalent set, the CI each clock reached, the bottleneck per batch size,
# and the GPU minutes each sweep used (measurement, extra trials, re-measurement, settle, warm-up).
# Needs only what `pip install .` installs. Writes everything to $OUT (or ./gpu-out).
#   bash bench/gpu_fidelity.sh            # on a GPU machine (clocks locked; observed when refused)
#   SIM=1 bash bench/gpu_fidelity.sh      # the same on the simulated A100 (tiny model, CPU)
#   SMOKE=1 bash bench/gpu_fidelity.sh    # the simulated run at the test suite's size (3 clocks, short windows)
set -u
export OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
SMOKE=${SMOKE:-0}; SIM=${SIM:-$SMOKE}
STEPS=20; WARMUP=2; MIN_TRIALS=3; MAX_TRIALS=5; WINDOW_S=2.5; SETTLE_S=1.0; NCLOCKS=8
export PYTHONUNBUFFERED=1 SWEEPD_CACHE_DIR=${SWEEPD_CACHE_DIR:-/tmp/sweepd-cache}
ROOT=${ROOT:-/tmp/sweepd-fidelity-root}; rm -rf "$ROOT"
LOG="$OUT/gpu_fidelity.log"; : > "$LOG"
log() { echo "== $*" | tee -a "$LOG"; }
SECONDS=0

if [ "$SIM" = 1 ]; then
  BACKEND=sim; MODEL=tiny; SIZE=64; DTYPE=auto; GPU_EXTRA='sim_model = "A100"'
  [ "$SMOKE" = 1 ] && { STEPS=2; SIZE=32; WARMUP=0; MIN_TRIALS=2; MAX_TRIALS=2; WINDOW_S=0.2; SETTLE_S=0; NCLOCKS=3; }
else
  BACKEND=nvml; MODEL=/tmp/random-sd15; SIZE=512; DTYPE=float16; GPU_EXTRA=''
  nvidia-smi --query-gpu=name,uuid,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 | tee -a "$LOG"
  [ -f /tmp/random-sd15/model_index.json ] || python3 bench/random_sd.py /tmp/random-sd15 2>&1 | grep -vi warn | tail -n 1 | tee -a "$LOG"
fi
CLOCKS=$(python3 - "$BACKEND" "$NCLOCKS" <<'PY'
import sys
from sweepd.gpu import open_device
n = int(sys.argv[2])
with open_device(sys.argv[1], sim_model="A100") as d:
    fs = [f for f in d.graphics_clocks(d.memory_clocks()[0]) if f >= 510]
    want = [fs[0] * (1 - 0.55 * k / (n - 1)) for k in range(n)]
    print(", ".join(str(f) for f in sorted({min(fs, key=lambda f: abs(f - x)) for x in want}, reverse=True)))
PY
) || { log "cannot read the GPU's clocks"; exit 1; }
log "clocks: $CLOCKS ($BACKEND)"

sweep() {  # $1 = batch size, $2 = clock_control
  cat > "$OUT/b$1.toml" <<TOML
job_id = "fidelity-b$1"
[workload]
model = "$MODEL"
prompt = "a photograph of an astronaut riding a horse"
steps = $STEPS
width = $SIZE
height = $SIZE
dtype = "$DTYPE"
batch_size = $1
[gpu]
backend = "$BACKEND"
clock_control = "$2"
$GPU_EXTRA
[frequencies]
mode = "custom"
list = [$CLOCKS]
[protocol]
warmup = $WARMUP
min_trials = $MIN_TRIALS
max_trials = $MAX_TRIALS
target_ci_pct = 2.0
min_window_s = $WINDOW_S
settle_s = $SETTLE_S
[images]
mode = "benchmark"
TOML
  python3 -m sweepd run "$OUT/b$1.toml" --root "$ROOT" --force >>"$LOG" 2>&1
}
for B in 1 4; do
  log "batch $B"
  sweep "$B" lock; rc=$?
  if [ "$rc" = 3 ]; then log "locking refused (exit 3): clock_control = observe"; rm -rf "$ROOT/results/job_fidelity-b$B"; sweep "$B" observe; rc=$?; fi
  [ "$rc" = 0 ] || log "batch $B: sweepd run exited $rc (see $LOG)"
  python3 -m sweepd report "fidelity-b$B" --root "$ROOT" --json > "$OUT/b$B.json" 2>>"$LOG"
  cp "$ROOT/results/job_fidelity-b$B/"{trials.csv,summary.csv,sweep.json} "$OUT/" 2>/dev/null
  for f in trials summary sweep; do [ -f "$OUT/$f.csv" ] && mv "$OUT/$f.csv" "$OUT/b$B-$f.csv"; done
  [ -f "$OUT/sweep.json" ] && mv "$OUT/sweep.json" "$OUT/b$B-sweep.json"
done

python3 - "$OUT" <<'PY' | tee -a "$LOG"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
r = {b: json.loads((out / f"b{b}.json").read_text()) for b in (1, 4) if (out / f"b{b}.json").stat().st_size}
edp = {b: next(o for o in a["optima"] if o["metric"] == "edp" and not o["bounded"]) for b, a in r.items()}
for b, a in r.items():
    o = edp[b]
    print(f"batch {b}: {a['gpu']}{' (SIMULATED)' if a['simulated'] else ''}: min EDP {o['freq_mhz']} MHz, "
          f"{o['j_per_image']:.1f} J/image, energy {-o['energy_saving_pct']:+.1f}% {o['energy_saving_ci95']}, "
          f"time {o['time_change_pct']:+.1f}% {o['time_change_ci95']}; equivalent {o['equivalent_mhz']}")
    print("  CI reached (J/image, 95 %): " + ", ".join(f"{c['freq_mhz']}: ±{c['ci95_pct']:.1f}% (n={c['n']})"
                                                     for c in a["clocks"]))
    print("  bottleneck: " + "; ".join(f"{x['bound']} {x['from_mhz']}-{x['to_mhz']}" for x in a["bottleneck"])
          + f"; drift {a['drift_pct']}%")
    t = a["gpu_time"]
    if t:
        print(f"  GPU time {t['total_s'] / 60:.2f} min: measurement {t['measure_s'] / 60:.2f}, extra trials "
              f"{t['extra_s'] / 60:.2f}, baseline again {t['drift_s'] / 60:.2f}, settle {t['settle_s'] / 60:.2f}, "
              f"warm-up {t['warmup_s'] / 60:.2f}, other {t['other_s'] / 60:.2f}")
    print(f"  flags: {len(a['flags'])}" + "".join(f"\n    {f}" for f in a["flags"]))
if len(edp) == 2:
    one, four = edp[1], edp[4]
    print(f"batch 1's optimum {one['freq_mhz']} MHz in batch 4's equivalent set: {one['freq_mhz'] in four['equivalent_mhz']}; "
          f"batch 4's {four['freq_mhz']} MHz in batch 1's: {four['freq_mhz'] in one['equivalent_mhz']}")
    print(f"batch 4 vs batch 1 at their optima: {(four['j_per_image'] / one['j_per_image'] - 1) * 100:+.1f}% J/image")
PY
log "wall time ${SECONDS}s"
