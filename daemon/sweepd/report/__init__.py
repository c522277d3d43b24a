"""Results people can act on: the optimal clock and what it saves (analysis.py), plots (plots.py),
a self-contained report.html (html.py), several sweeps side by side (compare.py), and before a
sweep, how long it will take and whether its images will fit (estimate.py)."""
