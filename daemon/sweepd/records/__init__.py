"""Typed records: one small pydantic model per file or row that crosses a module or process boundary.

- :mod:`.base`: ``JsonRecord`` (reads and writes itself atomically, with a schema version) and
  ``CsvRow`` (a CSV file's rows, its columns in field order).
- :mod:`.manifest`: ``sweep.json`` (``SweepManifest``, ``GpuInfo``, ``ShardPart``).
- :mod:`.status`: a worker's ``status.json`` (``WorkerStatus``) and the daemon's ``daemon.json``.
- :mod:`.shardspec`: the spec a SLURM shard runs (``ShardSpec``).
- :mod:`.rows`: ``trials.csv``, ``images.csv``, ``power.csv``, ``summary.csv`` rows.
- :mod:`.queuerows`: the queue's sweep and shard rows.
- :mod:`.archive`: the archive manifest beside each ``.tar.zst``.

Exit codes and errors are in :mod:`sweepd.errors`. Files written by sweepd 0.1.0 (no
``schema_version``) read as schema 1; ``tests/fixtures/v0.1.0/`` keeps some.
"""
