"""Running sweeps on SLURM (``executor = "slurm"``).

- :mod:`.commands`: sbatch, squeue, scontrol, sacct and scancel, one function each.
- :mod:`.script`: the job script (from the template in etc/) and the request file the node reads.
- :mod:`.executor`: the daemon's side: submit, follow, resubmit, cancel, merge.
- :mod:`.node`: the worker on the compute node (``sweepd worker --spec``).
- :mod:`.merge`: one result from the shards of a split sweep (``sweepd merge``).
"""
