"""Where sweepd keeps things: the root and its parts, job ids, the model cache.

Every command takes ``--root`` (or ``SWEEPD_ROOT``). ``images/`` and ``results/`` can each live
elsewhere (``SWEEPD_IMAGES_DIR``: images on scratch, ``SWEEPD_RESULTS_DIR``: metrics in project
storage).
"""

from __future__ import annotations

from sweepd.errors import InputError

import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

JOB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


_XDG = {"data": ("XDG_DATA_HOME", ".local/share"), "config": ("XDG_CONFIG_HOME", ".config"),
        "cache": ("XDG_CACHE_HOME", ".cache")}


def xdg(kind: str) -> Path:
    """The XDG base folder of a kind (data, config, cache): $XDG_<KIND>_HOME, else its default under ~.
    The one place sweepd reads these variables."""
    var, fallback = _XDG[kind]
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def default_root() -> Path:
    return xdg("data") / "sweepd"


def config_dir() -> Path:
    """~/.config/sweepd: the user's settings file and policies."""
    return xdg("config") / "sweepd"


def cache_dir() -> Path:
    value = os.environ.get("SWEEPD_CACHE_DIR")
    return Path(value) if value else xdg("cache") / "sweepd"


@dataclass(frozen=True)
class Layout:
    root: Path
    images: Path
    results: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike | None = None, images: str | os.PathLike | None = None,
                results: str | os.PathLike | None = None, configured: dict[str, str] | None = None) -> "Layout":
        """Each part: the flag, else SWEEPD_ROOT / SWEEPD_IMAGES_DIR / SWEEPD_RESULTS_DIR, else `configured`
        (the settings' root / images_dir / results_dir: :func:`sweepd.settings.layout` passes them), else the
        default (under the root). Reads no file."""
        conf = configured or {}
        root_p = Path(root or os.environ.get("SWEEPD_ROOT") or conf.get("root") or default_root())
        root_p = root_p.expanduser().absolute()
        images_p = Path(images or os.environ.get("SWEEPD_IMAGES_DIR") or conf.get("images_dir") or root_p / "images")
        results_p = Path(results or os.environ.get("SWEEPD_RESULTS_DIR") or conf.get("results_dir")
                         or root_p / "results")
        return cls(root_p, images_p.expanduser().absolute(), results_p.expanduser().absolute())

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def gpu_locks(self) -> Path:
        return self.state / "gpu-locks"

    @property
    def production_locks(self) -> Path:
        return self.state / "production-locks"

    @property
    def queue_db(self) -> Path:
        """The queue (SQLite, WAL): what the daemon runs and ran."""
        return self.state / "queue.sqlite"

    @property
    def daemon_lock(self) -> Path:
        """The pid file whose flock makes one daemon per root."""
        return self.state / "daemon.lock"

    @property
    def daemon_state(self) -> Path:
        """What the daemon last said of itself (status line, settings and policy errors)."""
        return self.state / "daemon.json"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def incoming(self) -> Path:
        return self.spool / "incoming"

    @property
    def accepted(self) -> Path:
        return self.spool / "accepted"

    @property
    def rejected(self) -> Path:
        return self.spool / "rejected"

    def job_results(self, job_id: str) -> Path:
        return self.results / f"{JOB_PREFIX}{check_job_id(job_id)}"

    def job_steps(self, job_id: str, shard: int | None = None) -> Path:
        """A sweep (or one shard of it) measured in SLURM steps: what its driver and steps hand each other
        (clock_control = "slurm")."""
        where = self.state / "slurm-steps" / check_job_id(job_id)
        return where if shard is None else where / f"shard-{int(shard)}"

    def job_images(self, job_id: str) -> Path:
        return self.images / f"{JOB_PREFIX}{check_job_id(job_id)}"


JOB_PREFIX = "job_"  # a job's folder under images/ and results/ is job_<ID>


def job_of(folder_name: str) -> str | None:
    """The job id a folder name ``job_<ID>`` stands for (None: not a job's folder)."""
    return folder_name[len(JOB_PREFIX):] if folder_name.startswith(JOB_PREFIX) else None


def private_dir(path: Path) -> Path:
    """A folder only its owner may enter (``state/``, ``spool/``: queued requests, the queue, locks), whatever the
    umask: made 0700, and an existing one of this user's narrowed to 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def shared_dir(path: Path, gid: int, mode: int) -> Path:
    """A folder of this user's that group ``gid`` may use too: ``mode`` (e.g. 0o2770: the group may drop files
    in, and they are the group's; 0o710: the group may only pass through), set whatever the umask."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_uid == os.getuid():
        os.chown(path, -1, gid)
        os.chmod(path, mode)
    return path


def foreign_owner(st: os.stat_result) -> int | None:
    """The owner's uid when a file is not this user's (it cannot have been written by this user's sweepd)."""
    return None if st.st_uid == os.geteuid() else st.st_uid


class RootNotWritable(InputError):
    """A folder sweepd must write to cannot be written (read-only filesystem, permissions)."""


def ensure_writable(folder: Path) -> Path:
    """Check that sweepd could write `folder` (it, or the nearest folder above it that exists), creating
    nothing; else one clear line (exit 2) naming it and what to do."""
    folder = Path(folder)
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    if os.access(p, os.W_OK | os.X_OK) and p.is_dir():
        return folder
    try:
        readonly = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
    except OSError:
        readonly = False
    why = "Read-only file system" if readonly else "Permission denied" if p.is_dir() else "not a folder"
    raise RootNotWritable(f"{folder}: {why}{'' if p == folder else f' ({p})'}: sweepd cannot write there; choose a "
                          "writable root with --root or SWEEPD_ROOT (or --images-dir / --results-dir for those folders)")


def check_job_id(job_id: str) -> str:
    """A job id names a folder: letters, digits, '.', '_', '-'; no path tricks."""
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id) or ".." in job_id:
        raise InputError(
            f"job_id {job_id!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return job_id


def job_id_from_env() -> str | None:
    """SLURM's job id (with the array task) when running under SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID") or None


def new_local_job_id() -> str:
    """A job id for a request that names none: the second it was taken and 48 random bits. The daemon takes
    hundreds of requests a second from a full spool; with 24 bits two of 900 identical requests drew the same id
    in one second, and the second was rejected as a duplicate job."""
    return f"local-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(6)}"
