"""The storage manager: declarative retention policies over image directories.

policy.py (what users write) -> index.py (what is on disk) -> planner.py (what to do, and why)
-> apply.py (doing it, with archive.py's archive-then-delete transaction) -> enforce.py (when:
on a schedule and on cap crossings, inside `sweepd serve` or `sweepd storage watch`).
"""
