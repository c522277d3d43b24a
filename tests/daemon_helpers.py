"""A real `sweepd serve` subprocess on a temporary root, with a real NOTIFY_SOCKET to listen on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import sweepd_env
from sweepd.queue import Queue


class Daemon:
    def __init__(self, root: Path, *, fake_nvml: bool = False, settings: str = "", extra_env: dict | None = None):
        self.root = root
        self.config = root.parent / f"{root.name}-settings.toml"
        self.config.write_text("reconcile_interval_s = 0.5\nstop_timeout_s = 60\n" + settings)
        self.sock_path = root.parent / f"{root.name}-notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = False
        # drain the socket all the time, as systemd does
        threading.Thread(target=self._drain, daemon=True).start()
        self.config_home = root.parent / f"{root.name}-xdg-config"  # no real user's policies or settings
        self.env = sweepd_env(fake_nvml=fake_nvml, NOTIFY_SOCKET=str(self.sock_path), WATCHDOG_USEC="4000000",
                              XDG_CONFIG_HOME=str(self.config_home), **(extra_env or {}))
        self.proc: subprocess.Popen | None = None

    def start(self, *args: str, wait_ready: bool = True) -> "Daemon":
        self.log = open(self.root.parent / f"{self.root.name}-daemon.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sweepd", "serve", "--root", str(self.root),
                                      "--config", str(self.config), *args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        if wait_ready:
            self.wait_message("READY=1")
        return self

    def _drain(self) -> None:
        while not self._closed:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return

    def read_messages(self) -> list[str]:
        time.sleep(0.05)
        return list(self.messages)

    def wait_message(self, text: str, timeout: float = 60, after: int = 0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in m for m in self.read_messages()[after:]):
                return
            assert self.proc.poll() is None, f"daemon exited {self.proc.returncode}: {self.output()}"
        raise AssertionError(f"no {text!r} from the daemon; got {self.messages}")

    def output(self) -> str:
        return (self.root.parent / f"{self.root.name}-daemon.log").read_text(errors="replace")

    def queue(self) -> Queue:
        return Queue(self.root / "state" / "queue.sqlite")

    def wait_state(self, sweep_id: str, states: tuple[str, ...], timeout: float = 180) -> dict:
        q = self.queue()
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                row = q.get(sweep_id)
                if row is not None and row.state in states:
                    return row
                if self.proc is not None and self.proc.poll() is not None and not self.proc.args[-1] == "--once":
                    raise AssertionError(f"daemon exited {self.proc.returncode}: {self.output()}")
                time.sleep(0.1)
        finally:
            q.close()
        raise AssertionError(f"sweep {sweep_id} never reached {states}: {row if row else None}\n{self.output()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 90) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def close(self) -> None:
        if self.proc:
            self.stop()
        self._closed = True
        time.sleep(0.15)
        self.sock.close()
        os.unlink(self.sock_path)
