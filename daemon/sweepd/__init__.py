"""sweepd: DVFS energy sweeps of Stable Diffusion, run by a user daemon.

Importing this package must stay cheap: no torch, no diffusers. Only
:mod:`sweepd.workload` imports them, and only the sweep process loads it.
"""

__version__ = "0.2.0.dev0"
