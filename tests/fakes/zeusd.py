"""A stand-in for zeusd (ml-energy/zeus, zeusd 0.5.0): its documented HTTP API over a unix socket, and only that
(docs/zeusd/api.md: GET /discover; POST /gpu/set_gpu_locked_clocks, /gpu/reset_gpu_locked_clocks,
/gpu/set_mem_locked_clocks, /gpu/reset_mem_locked_clocks with gpu_ids, min_clock_mhz, max_clock_mhz and block as
query parameters; /gpu/set_power_limit with power_limit_mw). It sets clocks through the fake pynvml as a root daemon would, into FAKE_NVML_STATE, so the
sweep's own (unprivileged) NVML reads them; every call is one JSON line in --log.

    python tests/fakes/zeusd.py --socket PATH --log FILE [--no-gpu-control]
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).parent))
os.environ.pop("FAKE_NVML_DENY_SET", None)  # zeusd runs as root
import pynvml  # noqa: E402  (the fake)

# route -> (the NVML call, its query parameters in order)
WRITES = {"/gpu/set_gpu_locked_clocks": ("nvmlDeviceSetGpuLockedClocks", ("min_clock_mhz", "max_clock_mhz")),
          "/gpu/reset_gpu_locked_clocks": ("nvmlDeviceResetGpuLockedClocks", ()),
          "/gpu/set_mem_locked_clocks": ("nvmlDeviceSetMemoryLockedClocks", ("min_clock_mhz", "max_clock_mhz")),
          "/gpu/reset_mem_locked_clocks": ("nvmlDeviceResetMemoryLockedClocks", ()),
          "/gpu/set_power_limit": ("nvmlDeviceSetPowerManagementLimit", ("power_limit_mw",))}


class Handler(BaseHTTPRequestHandler):
    server_version = "zeusd-stand-in/0.5.0"

    def address_string(self) -> str:
        return "uds"

    def log_message(self, *args) -> None:
        pass

    def _reply(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _log(self, route: str, params: dict, status: int) -> None:
        with open(self.server.log, "a") as fh:
            fh.write(json.dumps({"t": time.time(), "method": self.command, "route": route, "params": params,
                                 "status": status}) + "\n")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/discover":
            self._log(url.path, params, 404)
            return self._reply(404, {"error": "not found"})
        pynvml.nvmlInit()
        gpus = [{"id": i, "name": pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)),
                 "pci_address": f"0000:{i + 1:02x}:00.0", "cumulative_energy_available": True}
                for i in range(pynvml.nvmlDeviceGetCount())]
        groups = ["gpu-read"] + ([] if self.server.no_control else ["gpu-control"])
        self._log(url.path, params, 200)
        self._reply(200, {"gpus": gpus, "cpus": [], "enabled_api_groups": groups, "auth_required": False})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path not in WRITES or self.server.no_control:
            self._log(url.path, params, 404)
            return self._reply(404, {"error": "not found"})
        call, names = WRITES[url.path]
        try:
            ids = [int(x) for x in params["gpu_ids"].split(",")]
            args = tuple(int(params[n]) for n in names)
        except (KeyError, ValueError) as e:
            self._log(url.path, params, 400)
            return self._reply(400, {"error": f"bad query: {e}"})
        pynvml.nvmlInit()
        errors, status = {}, 200
        for i in ids:
            try:
                getattr(pynvml, call)(pynvml.nvmlDeviceGetHandleByIndex(i), *args)
            except pynvml.NVMLError as e:
                code = 400 if e.value in (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_INVALID_ARGUMENT) else 500
                errors[str(i)], status = str(e), max(status, code)
        self._log(url.path, params, status)
        self._reply(status, {"errors": errors} if errors else None)


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--no-gpu-control", action="store_true", help="the gpu-control API group disabled")
    a = ap.parse_args()
    Path(a.socket).unlink(missing_ok=True)
    with Server(a.socket, Handler) as srv:
        srv.log, srv.no_control = a.log, a.no_gpu_control
        os.chmod(a.socket, 0o666)  # zeusd's socket is the users' way in
        print("ready", flush=True)
        srv.serve_forever()


if __name__ == "__main__":
    main()
