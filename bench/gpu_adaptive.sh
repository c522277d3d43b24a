#!/usr/bin/env bash
# Issue #13 on a real GPU: an adaptive sweep and a 12-clock stride sweep of the same request (same
# workload and protocol; only [frequencies] differs), then whether the adaptive answer lies in the
# stride sweep's equivalent set, and the GPU minutes of each. Then a production lock at the adaptive
# answer (`sweepd clock set JOB`), a sweep of 1 clock on that GPU, and whether the lock was restored
# after it (the idle SM clock stays at a locked clock), and `sweepd clock reset`.
# Workload: an SD-1.5-sized random-weight model (bench/random_sd.py), 512x512, 20 steps, fp16, batch 4
# (at batch 1 SD is host-bound on an H100/H200 and the curve is flat over the top half of the clocks).
# Needs only what `pip install .` installs; well under 10 minutes on an H200. Writes to $OUT (or ./gpu-out).
#   bash bench/gpu_adaptive.sh            # on a GPU machine (clocks locked)
#   SIM=1 bash bench/gpu_adaptive.sh      # the same on the simulated H100 (tiny model, CPU)
#   SMOKE=1 bash bench/gpu_adaptive.sh    # the simulated run at the test suite's size (4 stride clocks, short windows)
set -u
export OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
SMOKE=${SMOKE:-0}; SIM=${SIM:-$SMOKE}
STEPS=20; WARMUP=2; WINDOW_S=2.0; SETTLE_S=1.0; NCLOCKS=12
export PYTHONUNBUFFERED=1 SWEEPD_CACHE_DIR=${SWEEPD_CACHE_DIR:-/tmp/sweepd-cache}
ROOT=${ROOT:-/tmp/sweepd-adaptive-root}; rm -rf "$ROOT"; REQ="$ROOT.requests"; mkdir -p "$REQ"
LOG="$OUT/gpu_adaptive.log"; : > "$LOG"
log() { echo "== $*" | tee -a "$LOG"; }
SECONDS=0

if [ "$SIM" = 1 ]; then
  BACKEND=sim; MODEL=tiny; SIZE=64; DTYPE=auto; GPU_EXTRA='sim_model = "H100"'; CLI_GPU=(--backend sim --sim-model H100)
  [ "$SMOKE" = 1 ] && { STEPS=2; SIZE=32; WARMUP=0; WINDOW_S=0.2; SETTLE_S=0; NCLOCKS=4; }
else
  BACKEND=nvml; MODEL=/tmp/random-sd15; SIZE=512; DTYPE=float16; GPU_EXTRA=''; CLI_GPU=(--backend nvml)
  nvidia-smi --query-gpu=name,uuid,driver_version,clocks.max.sm,power.limit --format=csv 2>&1 | tee -a "$LOG"
  [ -f "$MODEL/model_index.json" ] || python3 bench/random_sd.py "$MODEL" 2>&1 | grep -vi warn | tail -n 1 | tee -a "$LOG"
  log "model built at ${SECONDS}s"
fi
sm_clock() {  # the SM clock idle and under a matrix-product load: a locked GPU runs at its lock under load
  [ "$SIM" = 1 ] && { echo "(simulated GPU: its lock lives in sweepd's state alone)"; return; }
  python3 - <<'PY'
import time, pynvml, torch
pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0)
idle = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
a = torch.randn(8192, 8192, device="cuda", dtype=torch.half); t = time.time()
while time.time() - t < 1.5:
    a @ a
busy = pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM); torch.cuda.synchronize()
print(f"SM clock idle {idle} MHz, under load {busy} MHz")
PY
}
# 12 clocks evenly spaced by table index from the highest to the lowest >= 510 MHz
CLOCKS=$(python3 - "$BACKEND" "$NCLOCKS" <<'PY'
import sys
from sweepd.gpu import open_device
n = int(sys.argv[2])
with open_device(sys.argv[1], sim_model="H100") as d:
    fs = [f for f in d.graphics_clocks(d.memory_clocks()[0]) if f >= 510]
    print(", ".join(str(fs[round(k * (len(fs) - 1) / (n - 1))]) for k in range(n)))
PY
) || { log "cannot read the GPU's clocks"; exit 1; }
log "stride clocks: $CLOCKS ($BACKEND)"
log "before anything: $(sm_clock)"

request() {  # $1 = job id, $2 = the [frequencies] lines
  cat > "$REQ/$1.toml" <<TOML
job_id = "$1"
[workload]
model = "$MODEL"
prompt = "a photograph of an astronaut riding a horse"
steps = $STEPS
width = $SIZE
height = $SIZE
dtype = "$DTYPE"
batch_size = 4
[gpu]
backend = "$BACKEND"
clock_control = "lock"
$GPU_EXTRA
[frequencies]
$2
[protocol]
warmup = $WARMUP
trials = 3
min_window_s = $WINDOW_S
settle_s = $SETTLE_S
[images]
mode = "benchmark"
TOML
}
sweep() {  # $1 = job id
  log "sweep $1 (at ${SECONDS}s)"
  python3 -m sweepd run "$REQ/$1.toml" --root "$ROOT" >>"$LOG" 2>&1 || log "$1: sweepd run exited $?"
  [ "$1" = locked ] && return  # at most 8 files come back from a device machine: the two sweeps' and the log
  python3 -m sweepd report "$1" --root "$ROOT" --json > "$OUT/$1.json" 2>>"$LOG"
  cp "$ROOT/results/job_$1/trials.csv" "$OUT/$1-trials.csv" 2>/dev/null
}
request adaptive 'mode = "adaptive"
objective = "edp"'
request stride "mode = \"custom\"
list = [$CLOCKS]"
cp "$REQ/adaptive.toml" "$OUT/request-adaptive.toml"
sweep adaptive
sweep stride

python3 - "$OUT" <<'PY' | tee -a "$LOG"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
r = {k: json.loads(t) for k in ("adaptive", "stride") if (t := (out / f"{k}.json").read_text() if (out / f"{k}.json").exists() else "")}
edp = {k: next(o for o in a["optima"] if o["metric"] == "edp" and not o["bounded"]) for k, a in r.items()}
for k, a in r.items():
    o, t = edp[k], a["gpu_time"]
    ci = lambda c: "[" + ", ".join(f"{x:+.1f}" for x in sorted(c)) + "]" if c else ""
    print(f"{k}: {a['gpu']}{' (SIMULATED)' if a['simulated'] else ''}: {len(a['clocks'])} clocks, GPU time "
          f"{t['total_s'] / 60:.2f} min; min EDP {o['freq_mhz']} MHz ({o['j_per_image']:.1f} J/image, energy "
          f"{-o['energy_saving_pct']:+.1f}% {ci([-x for x in o['energy_saving_ci95'] or []])}, time {o['time_change_pct']:+.1f}% "
          f"{ci(o['time_change_ci95'])} vs the highest); equivalent {o['equivalent_mhz']}")
    if a.get("search"):
        s = a["search"]
        print(f"  search: chose {s['chosen_mhz']} MHz; measured {s['evaluated_mhz']} ({len(s['evaluated_mhz'])} of "
              f"{s['supported_count']}); stopped because {s['stopped_because']}")
    print("  per clock (MHz: s/image, J/image ±CI): " + ", ".join(
        f"{c['freq_mhz']}: {c['s_per_image_mean']:.3f}, {c['j_per_image_mean']:.1f} ±{c['ci95_pct']:.1f}%" for c in a["clocks"]))
    print(f"  flags: {len(a['flags'])}" + "".join(f"\n    {f}" for f in a["flags"]))
if len(r) == 2:
    pick, eq = r["adaptive"]["search"]["chosen_mhz"], edp["stride"]["equivalent_mhz"]
    print(f"adaptive answer {pick} MHz; stride sweep's equivalent set {eq} spans {min(eq)}-{max(eq)} MHz: "
          f"{'inside' if min(eq) <= pick <= max(eq) else 'OUTSIDE'}")
    a_eq = edp["adaptive"]["equivalent_mhz"]
    print(f"stride optimum {edp['stride']['freq_mhz']} MHz within the adaptive sweep's equivalent span "
          f"{min(a_eq)}-{max(a_eq)}: {min(a_eq) <= edp['stride']['freq_mhz'] <= max(a_eq)}")
    ta, ts = (r[k]["gpu_time"]["total_s"] for k in ("adaptive", "stride"))
    print(f"GPU time: adaptive {ta / 60:.2f} min, stride {ts / 60:.2f} min ({ta / ts * 100:.0f} %)")
PY

log "production lock at the adaptive answer (at ${SECONDS}s)"
python3 -m sweepd clock set adaptive "${CLI_GPU[@]}" --root "$ROOT" 2>&1 | tee -a "$LOG"
python3 -m sweepd clock show --root "$ROOT" 2>&1 | tee -a "$LOG"
log "while locked: $(sm_clock)"
request locked "mode = \"custom\"
list = [$(echo "$CLOCKS" | cut -d, -f1)]"
sweep locked
log "after a sweep on the locked GPU (the production lock should be back): $(sm_clock)"
python3 -m sweepd gpus --backend "$BACKEND" --root "$ROOT" 2>&1 | head -n 8 | tee -a "$LOG"
python3 -m sweepd clock reset "${CLI_GPU[@]}" --root "$ROOT" 2>&1 | tee -a "$LOG"
log "after clock reset: $(sm_clock)"
log "wall time ${SECONDS}s"
