"""A saved plan (`storage plan --json` > FILE, then `storage apply --plan FILE`) is a request, not an authority.

Its actions are checked against a plan made now, under the storage lock, from the current
policy and the current tree. What runs is each saved action narrowed to what the current plan
would do anyway. Any saved action that asks for more (another root, unit or kind, a file the
policy does not select now, a name that leaves its unit) makes the whole plan refused before
anything is touched, with the file, the field and the value. Differences that time explains are
not refusals: a job that became protected since (a `.keep`, a queued or running sweep) is
skipped with a note, and files already gone are dropped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sweepd import configfile
from sweepd.configfile import ConfigError, short_value
from sweepd.storage.planner import Action, Plan
from sweepd.storage.safefs import UnitDir, UnsafePath, check_name, check_unit_name


class SavedPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actions: list[Action]
    notes: list[str] = []


MAX_PLAN_BYTES = 512 << 20  # a plan lists every file it touches: a full cap eviction can list millions


def load(path: Path) -> SavedPlan:
    return configfile.validate(SavedPlan, configfile.read_data(Path(path), MAX_PLAN_BYTES), str(path))


_SAME = ("root", "kind", "archive_dir", "zstd_level", "zstd_threads")


def reconcile(saved: SavedPlan, fresh: Plan, protected: dict[str, str], source: str) -> Plan:
    """The plan to run: saved actions narrowed to the fresh plan. Raises ConfigError listing every refusal.
    `protected` maps unit names to why they are protected now."""
    by_key = {(a.rule, a.root, a.unit): a for a in fresh.actions}
    problems, out = [], Plan(notes=[])
    for i, a in enumerate(saved.actions):
        at = f"actions[{i}]"
        try:
            check_unit_name(a.unit)
        except UnsafePath as e:
            problems.append(f"{at}.unit: {short_value(a.unit)}: {e}")
            continue
        bad = False
        for j, rel in enumerate(a.files):
            try:
                check_name(rel, "file")
            except UnsafePath:
                problems.append(f"{at}.files[{j}]: {short_value(rel)}: not a path inside {a.unit}/")
                bad = True
        if bad:
            continue
        now = by_key.get((a.rule, a.root, a.unit))
        if now is None:
            if a.unit in protected:
                out.notes.append(f"{a.unit} {protected[a.unit]} since the plan was made: skipped")
                continue
            rules = {x.rule for x in fresh.actions}
            why = (f"the current policy takes no action on {a.unit} in {a.root}" if a.rule in rules or not rules
                   else f"no rule {a.rule!r} acts now")
            problems.append(f"{at}: {a.rule}/{a.unit}: {why}")
            continue
        for name in _SAME:
            if getattr(a, name) != getattr(now, name):
                problems.append(f"{at}.{name}: {short_value(getattr(a, name))}: the current policy says "
                                f"{short_value(getattr(now, name))}")
                bad = True
        if bad:
            continue
        allowed = set(now.files)
        extra = [(j, f) for j, f in enumerate(a.files) if f not in allowed and _exists(now, f)]
        for j, f in extra[:5]:
            problems.append(f"{at}.files[{j}]: {short_value(f)}: not selected by rule {a.rule!r} for {a.unit} now")
        if extra:
            continue
        files = [f for f in a.files if f in allowed]
        gone = len(a.files) - len(files)
        if gone:
            out.notes.append(f"{a.unit}: {gone} file(s) of the plan are gone already")
        if files:
            narrowed = len(files) < len(now.files)
            out.actions.append(now.model_copy(update={
                "files": files, "nfiles": len(files), "whole": now.whole and not narrowed,
                "bytes": _bytes(now, files) if narrowed else now.bytes}))
    if problems:
        raise ConfigError(source, problems + ["the saved plan was refused: nothing was touched"])
    return out


def _bytes(action: Action, files: list[str]) -> int:
    try:
        with UnitDir(Path(action.root), action.unit) as unit:
            return sum(unit.lstat(f).st_size for f in files)
    except (UnsafePath, OSError):
        return 0


def _exists(action: Action, rel: str) -> bool:
    try:
        with UnitDir(Path(action.root), action.unit) as unit:
            unit.lstat(rel)
        return True
    except FileNotFoundError:
        return False
    except (UnsafePath, OSError):
        return True
