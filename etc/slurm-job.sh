#!/bin/bash
# sweepd's SLURM job script template. `sweepd serve` (executor = "slurm") renders one script per
# submission into results/slurm/<sweep id>/ and submits it with
#   sbatch --parsable --output=<that folder>/shard-%a.job-%A_%a.log <script> [--job-id ID]
#
# To change it, copy this file, edit it, and name the copy in the settings: [slurm] template.
# Placeholders (each name in double braces), filled in by sweepd:
#   sbatch       the SBATCH directives: job name, array, time limit (the estimate plus a margin),
#                partition, account, gres and the extra options of the settings and the request
#   python       the interpreter with sweepd installed, on the compute node (quoted)
#   spec         the request file the worker reads: prompts never appear in this script (quoted)
#   node_root    a folder on the node's local disk for GPU clock-lock records (quoted)
#   images, results  the shared folders that job_<SLURM_JOB_ID>/ go into (quoted)
# Arguments after the script name (sbatch passes them on as "$@") are sweepd's own: --job-id on
# a resubmission, so that a resumed shard writes where it started.
{{sbatch}}

set -u
export PYTHONUNBUFFERED=1
echo "sweepd: job ${SLURM_JOB_ID:-?} (array ${SLURM_ARRAY_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-?}) on $(hostname)"
# exec: SLURM's SIGTERM (time limit, scancel) goes straight to the worker, which stops after its
# current trial and resets the GPU's clocks.
exec {{python}} -m sweepd worker --spec {{spec}} --shard "${SLURM_ARRAY_TASK_ID:-0}" \
    --root {{node_root}} --images-dir {{images}} --results-dir {{results}} "$@"
