"""Clocks set through zeusd, Zeus's privileged daemon (ml-energy/zeus, `zeusd/`; API: `docs/zeusd/api.md` as of
zeusd 0.5.0): HTTP over a unix socket that an administrator runs as root, so that users may set GPU clocks
without it. sweepd uses its documented write endpoints (`POST /gpu/set_gpu_locked_clocks`,
`/gpu/reset_gpu_locked_clocks`, `/gpu/set_mem_locked_clocks`, `/gpu/reset_mem_locked_clocks` and
`/gpu/set_power_limit` (no reset: the default limit is set again), each with `gpu_ids`, the clock range or
`power_limit_mw` and `block=true` as query parameters) and `GET /discover`; energy, power, the limit's range and
the clock the GPU runs at are still read through NVML. GPUs are named by their NVML index, as zeusd names them.

Each HTTP status maps to one of sweepd's GPU errors (403: permission, 400: not supported, anything else or no
answer: unavailable), so nothing above this module speaks HTTP.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from urllib.parse import urlencode

from sweepd.gpu.base import GpuNotSupported, GpuPermissionError, GpuUnavailable

DEFAULT_SOCKET = "/run/zeusd/zeusd.sock"
TIMEOUT_S = 10.0
API_VERSION = "zeusd 0.5.0 (docs/zeusd/api.md)"


def socket_path(configured: str | None = None) -> str:
    """[gpu] zeusd_socket, else ZEUSD_SOCK_PATH (what Zeus reads), else zeusd's default."""
    return configured or os.environ.get("ZEUSD_SOCK_PATH") or DEFAULT_SOCKET


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Zeusd:
    def __init__(self, path: str, timeout_s: float = TIMEOUT_S):
        self.path, self.timeout_s = path, timeout_s

    def _call(self, method: str, route: str, params: dict | None = None) -> dict:
        url = route + (f"?{urlencode(params)}" if params else "")
        conn = _UnixConnection(self.path, self.timeout_s)
        try:
            conn.request(method, url)
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise GpuUnavailable(f"zeusd at {self.path} does not answer ({e}): is it running, and may this user "
                                 "use its socket?") from None
        finally:
            conn.close()
        if resp.status == 200:
            return json.loads(body) if body else {}
        why = _errors(body)
        if resp.status in (401, 403):
            raise GpuPermissionError(f"zeusd {route}: permission denied ({why}): its socket or token does not "
                                     "allow GPU control to this user")
        if resp.status in (400, 404):
            raise GpuNotSupported(f"zeusd {route}: {why} (HTTP {resp.status}; a 404 is an API group zeusd has "
                                  "not enabled)")
        raise GpuUnavailable(f"zeusd {route}: HTTP {resp.status}: {why}")

    def discover(self) -> dict:
        return self._call("GET", "/discover")

    def can_control(self) -> tuple[bool, str]:
        """Whether this zeusd offers GPU control to this user, and why not."""
        try:
            d = self.discover()
        except (GpuUnavailable, GpuNotSupported, GpuPermissionError) as e:
            return False, str(e)
        if "gpu-control" not in d.get("enabled_api_groups", []):
            return False, f"zeusd at {self.path} has its gpu-control API group disabled"
        return True, f"zeusd at {self.path}"

    def lock(self, index: int, sm_mhz: int, memory_mhz: int | None) -> None:
        self._call("POST", "/gpu/set_gpu_locked_clocks", _write(index, min_clock_mhz=sm_mhz, max_clock_mhz=sm_mhz))
        if memory_mhz is not None:
            try:
                self._call("POST", "/gpu/set_mem_locked_clocks",
                           _write(index, min_clock_mhz=memory_mhz, max_clock_mhz=memory_mhz))
            except GpuNotSupported:
                pass  # before Ampere: the memory clock stays where the driver puts it (as with NVML's own lock)

    def set_power_limit(self, index: int, watts: int) -> None:
        self._call("POST", "/gpu/set_power_limit", _write(index, power_limit_mw=int(watts) * 1000))

    def reset(self, index: int) -> None:
        self._call("POST", "/gpu/reset_gpu_locked_clocks", _write(index))
        try:
            self._call("POST", "/gpu/reset_mem_locked_clocks", _write(index))
        except GpuNotSupported:
            pass


def _write(index: int, **fields: int) -> dict:
    return {"gpu_ids": str(index), **{k: str(v) for k, v in fields.items()}, "block": "true"}


def _errors(body: bytes) -> str:
    try:
        errs = json.loads(body).get("errors")
    except (ValueError, AttributeError):
        errs = None
    if isinstance(errs, dict) and errs:
        return "; ".join(f"GPU {k}: {v}" for k, v in errs.items())
    return body.decode(errors="replace").strip()[:300] or "no reason given"
