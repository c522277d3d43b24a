import sys

if len(sys.argv) > 1 and sys.argv[1] in ("worker", "step"):
    # Before anything else (the CLI's imports take a second): a cancel that lands while the worker
    # starts must be an orderly stop, and a worker must not outlive the daemon that started it (a SLURM
    # step: the same for scancel and the time limit).
    from sweepd.engine.stop import install_early

    install_early()

from sweepd.cli import main  # noqa: E402

main()
