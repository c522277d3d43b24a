"""systemd's notify protocol: one datagram to $NOTIFY_SOCKET (READY=1, STATUS=..., WATCHDOG=1, ...).

A no-op when not started by systemd (no NOTIFY_SOCKET). systemd 252 on the target machines: no
Type=notify-reload, so the unit is Type=notify and a reload is RELOADING=1 ... READY=1.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, env: dict[str, str] | None = None):
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        ours = pid is None or pid == str(os.getpid())
        self.watchdog_interval_s = int(usec) / 1e6 / 2 if usec and ours else None
        self._last_ping = 0.0
        self._last_status = ""

    def send(self, *lines: str) -> None:
        if not self.addr:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)  # a full socket queue must never stall the daemon's loop
            try:
                s.sendto("\n".join(lines).encode(), self.addr)
            except OSError:
                pass  # queue full or systemd gone: a later message will tell

    def ready(self) -> None:
        self.send("READY=1")

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def watchdog(self) -> None:
        """Ping if half the watchdog interval has passed; call it from the main loop."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.send("WATCHDOG=1")
