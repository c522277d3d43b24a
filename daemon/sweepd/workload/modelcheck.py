"""What can be checked about `workload.model` before a job folder is made or the model loads (no torch):
a built-in tiny model's name; a local folder exists and holds a diffusers pipeline (of a family
:mod:`sweepd.families` knows, or another that diffusers' AutoPipelineForText2Image loads); a hub id is well-formed and, when the hub is offline, present in the local Hugging Face
cache (the line names the family its name tells)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from sweepd import families, paths
from sweepd.configfile import ConfigError

HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}\Z")


def _looks_like_path(model: str) -> bool:
    """A path: absolute, relative by ./ ../ ~, more than one '/', or something that exists here."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1 or Path(model).expanduser().exists()


def hub_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(paths.xdg("cache") / "huggingface")
    return Path(home) / "hub"


def problem(model: str) -> str | None:
    """Why this model cannot load here (None: it may)."""
    if model in families.TINY:
        return None
    if _looks_like_path(model):
        p = Path(model).expanduser()
        if not p.exists():
            return "no such folder (a local model is a folder saved by diffusers' save_pretrained)"
        if not p.is_dir():
            return "not a folder (a local model is a folder saved by diffusers' save_pretrained)"
        if not (p / "model_index.json").is_file():
            return "holds no diffusers pipeline (no model_index.json in it)"
        return None
    if not HUB_ID.match(model):
        return f'neither a built-in model ({", ".join(families.TINY)}), a local folder, nor a Hugging Face id ' \
               "(organisation/name)"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        cached = hub_cache() / f"models--{model.replace('/', '--')}"
        if not cached.is_dir():
            family = families.of_hub_id(model)
            what = f"{families.FAMILIES[family].title} by its name, " if family else ""
            return f"{what}not in the Hugging Face cache ({hub_cache()}) and the hub is offline (HF_HUB_OFFLINE=1)"
    return None


def check(model: str, source: str = "request") -> None:
    why = problem(model)
    if why is not None:
        raise ConfigError(source, [f"workload.model: {model!r}: {why}"])
