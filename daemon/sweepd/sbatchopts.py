"""Who may write which ``#SBATCH`` line: the options sweepd sets itself in a SLURM job script, and the extra options
a request or the daemon's settings add, each checked to be one well-formed option that sweepd does not set."""

from __future__ import annotations

SLURM_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
# Options sweepd sets itself in the job script: asked for here they would break the sweep's bookkeeping.
SWEEPD_SBATCH = {"array": "split", "a": "split", "output": None, "o": None, "error": None, "e": None,
                 "time": "time_limit_minutes", "t": "time_limit_minutes", "parsable": None, "wrap": None,
                 "job-name": None, "J": None, "partition": "partition", "p": "partition", "account": "account",
                 "A": "account", "gres": "gres (daemon setting)", "open-mode": None,
                 # the job's environment, folder and start are sweepd's too (an LD_PRELOAD would run in the job)
                 "export": None, "export-file": None, "chdir": None, "D": None, "dependency": None, "d": None}


def reserved_sbatch_option(name: str) -> str | None:
    """The option sweepd sets that sbatch would read ``name`` as (``--out`` is ``--output``: sbatch takes any
    unambiguous prefix of a long option; an ambiguous one is refused too), else None."""
    if not name.startswith("--"):
        short = name.lstrip("-")
        return short if short in SWEEPD_SBATCH else None
    typed = name[2:]
    if typed in SWEEPD_SBATCH:
        return typed
    hits = sorted(r for r in SWEEPD_SBATCH if len(r) > 1 and r.startswith(typed))
    return hits[0] if hits else None

def check_sbatch_options(options: list[str]) -> list[str]:
    """Extra ``#SBATCH`` options: one line each, an option SLURM knows the form of, none that sweepd sets.

    They are written into the job script as ``#SBATCH <option>`` lines, so a line break would put
    text into the script's shell code: refused, as is any control character.
    """
    import re

    for opt in options:
        if not isinstance(opt, str) or any(ord(c) < 32 or ord(c) == 127 for c in opt):
            raise ValueError(f"{opt!r}: one option per entry, without line breaks or control characters")
        m = re.match(r"^(--[A-Za-z][A-Za-z0-9-]*|-[A-Za-z])(?:([= ])(.*))?$", opt)
        if not m:
            raise ValueError(f"{opt!r}: write an sbatch option, e.g. '--constraint=a100' or '--qos=short'")
        name = reserved_sbatch_option(m.group(1))
        if name is not None:
            instead = SWEEPD_SBATCH[name]
            dashes = "-" if len(name) == 1 else "--"
            raise ValueError(f"{opt!r}: sweepd sets {dashes}{name} itself" + (f"; use {instead}" if instead else ""))
        if len(opt) > 500:
            raise ValueError(f"{opt[:40]!r}...: longer than 500 characters")
    return options
