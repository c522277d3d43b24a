"""Will a request's images fit? Used by `sweepd estimate`, and by `submit` and `run` to refuse a sweep
whose images would not fit (unless --force), naming the image mode that would."""

from __future__ import annotations

import os
from pathlib import Path

from sweepd.errors import InputError
from sweepd.paths import Layout
from sweepd.report.estimate import MODES, Estimate, estimate
from sweepd.request import SweepRequest


class WontFit(InputError):
    pass


def policy_caps(layout: Layout) -> list[tuple[str, int | None, int | None, int, int]]:
    """Caps of the user's policy rules that cover images/, with what they hold now."""
    from sweepd.configfile import ConfigError
    from sweepd.storage.context import IndexCache, load_policies, rules_of
    from sweepd.storage.planner import PolicyError, scopes

    try:
        rules = rules_of(load_policies())
    except ConfigError:
        return []
    images, cache, out = Path(os.path.realpath(layout.images)), IndexCache(), []
    for rule, _ in rules:
        if rule.max_bytes is None and rule.max_files is None:
            continue
        try:
            checked = scopes(layout, rule)
        except PolicyError:  # a policy the daemon would not load either
            continue
        for scope in checked:
            if images == scope.path:
                idx = cache.get(rule, scope)
                out.append((rule.name, rule.max_bytes, rule.max_files, idx.bytes, idx.nfiles))
    return out


def estimate_request(req: SweepRequest, layout: Layout) -> Estimate:
    from sweepd.engine.runner import open_for

    with open_for(req) as device:
        return estimate(req, layout, device, policy_caps(layout))


def check(req: SweepRequest, layout: Layout) -> Estimate:
    e = estimate_request(req, layout)
    m = e.mode(req.images.mode)
    if not m.fits:
        smaller = [x.mode for x in e.modes if x.fits and MODES.index(x.mode) < MODES.index(m.mode)]
        hint = f'images.mode = "{smaller[-1]}" would fit' if smaller else "no image mode fits"
        raise WontFit(f"images.mode {m.mode!r}: {m.images_saved} images, {m.bytes} bytes would not fit ({m.why}); "
                      f"{hint}; --force runs it anyway")
    return e
