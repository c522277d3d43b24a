"""The ``sweepd`` command line: one module per command group, each command a thin wrapper (parse,
call the module that does the work, print, pick an exit code). `common` holds what they share;
importing this package registers every command on `app`. Nothing here imports torch."""

from sweepd.cli import sweeps, client, listing, report, clock, service, storage  # noqa: F401,I001  (registers the commands, in help order)
from sweepd.cli.common import app


def main() -> None:
    app()
