"""Every request and command block in README.md runs as written: requests are validated (and
estimated), commands run in the README's order against a temporary root and home.

Placeholders are filled the way a reader would: JOB and ID with real ids from the commands before,
REQUEST with the README's own request, my-sweep.toml with a small request of one's own, [optional
parts] both with and without. Only what needs a real systemd or pip (systemctl, loginctl, pip
install) is left to the tests that cover it (the unit is verified by systemd-analyze elsewhere)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, sweepd_env, wait_for_rows, write_request

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
NOT_HERE = ("pip install", "systemctl", "loginctl")  # no systemd as PID 1, no reinstalling in a test


def commands() -> list[str]:
    out = []
    for lang, body in BLOCKS:
        if lang != "sh":
            continue
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def test_every_toml_block_is_a_valid_request(tmp_path):
    from sweepd import configfile
    from sweepd.request import SweepRequest

    requests = [body for lang, body in BLOCKS if lang == "toml"]
    assert len(requests) >= 2
    for k, body in enumerate(requests):
        configfile.validate(SweepRequest, configfile.parse_text(body, "toml", f"README block {k}"), f"README block {k}")
    full = tmp_path / "readme-request.toml"
    full.write_text(next(b for b in requests if "[workload]" in b))
    r = subprocess.run([sys.executable, "-m", "sweepd", "estimate", str(full), "--root", str(tmp_path / "root")],
                       capture_output=True, text=True, env=sweepd_env(XDG_CONFIG_HOME=str(tmp_path / "x")))
    assert r.returncode == 0, r.stdout + r.stderr


class Reader:
    """Runs README lines in a sandbox: HOME, XDG folders and SWEEPD_ROOT under tmp, cwd the checkout."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.env = sweepd_env(HOME=str(tmp / "home"), XDG_CONFIG_HOME=str(tmp / "home/.config"),
                              XDG_DATA_HOME=str(tmp / "home/.local/share"), SWEEPD_ROOT=str(tmp / "root"),
                              PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
        (tmp / "home").mkdir()
        self.cwd = tmp / "checkout"  # the reader's checkout: the repo's examples/ and policies/, and their own files
        self.cwd.mkdir()
        for name in ("examples", "policies"):
            (self.cwd / name).symlink_to(REPO / name)
        self.ran: list[str] = []
        self.covered: set[str] = set()  # README lines whose every expansion ran

    def sh(self, line: str, ok=(0,)) -> subprocess.CompletedProcess:
        line = line.replace("sweepd ", f"{sys.executable} -m sweepd ")
        r = subprocess.run(["bash", "-c", line], cwd=self.cwd, capture_output=True, text=True, env=self.env, timeout=600)
        assert r.returncode in ok, f"{line}\nexit {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert "Traceback" not in r.stdout + r.stderr, line
        self.ran.append(line)
        return r


def expand(line: str, subs: dict[str, list[str]]) -> list[str]:
    """One README line -> the command lines a reader runs: placeholders filled, [optional] parts with and without."""
    variants = [line]
    for opt in re.findall(r"\[[^\]]+\]", line):
        variants = [v.replace(opt, "") for v in variants] + [v.replace(opt, opt[1:-1]) for v in variants]
    out = []
    for v in variants:
        if "--json | --csv" in v:
            out += [v.replace("--json | --csv", "--json"), v.replace("--json | --csv", "--csv")]
        else:
            out.append(v)
    for key, values in subs.items():
        out = [re.sub(rf"\b{key}\b", " ".join(values), v) for v in out]
    return [" ".join(v.split()) for v in out]


def test_every_command_block_runs_as_written(tmp_path):
    lines = commands()
    r = Reader(tmp_path)
    req = next(b for lang, b in BLOCKS if lang == "toml" and "[workload]" in b)
    (tmp_path / "readme-request.toml").write_text(req)
    write_request(r.cwd / "my-sweep.toml", clocks=(1410, 945, 510), trials=1)  # the reader's own request
    _walk(r, lines, tmp_path)
    missing = [line for line in lines if not any(w in line for w in NOT_HERE) and line not in r.covered]
    assert not missing, f"README lines never run: {missing}"


def _walk(r: Reader, lines: list[str], tmp: Path) -> None:
    ids: dict[str, str] = {}
    env = r.env
    for line in lines:
        if any(w in line for w in NOT_HERE):
            if "&& sweepd demo" in line:
                r.sh("sweepd demo")  # the quickstart's second half: the install is what CI just did
                r.covered.add(line)
            continue
        if line.startswith("sweepd run --resume"):
            # a sweep that was stopped: started, interrupted after its first trial, then resumed as written
            p = subprocess.Popen([sys.executable, "-m", "sweepd", "run", "my-sweep.toml", "--job-id", "stopped"],
                                 cwd=r.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            wait_for_rows(tmp / "root/results/job_stopped/trials.csv", 1, p)
            p.send_signal(signal.SIGINT)
            assert p.wait(120) == 4
            ids["JOB"] = "stopped"
        if line == "sweepd serve":
            d = subprocess.Popen([sys.executable, "-m", "sweepd", "serve"], cwd=r.cwd, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            end = time.monotonic() + 60
            while time.monotonic() < end and not (tmp / "root/state/daemon.json").exists():
                time.sleep(0.2)
            ids["daemon"] = d
            r.covered.add(line)
            continue
        if line.startswith("sweepd serve --once") and "daemon" in ids:
            d = ids.pop("daemon")
            d.send_signal(signal.SIGTERM)
            assert d.wait(120) == 0
        if line.startswith("sweepd storage plan") and "aged" not in ids:
            for p in (tmp / "root/images").rglob("*.png"):  # one job old enough for the shipped age rule
                if "job_stopped" in str(p):
                    os.utime(p, (time.time() - 60 * 86400,) * 2)
            ids["aged"] = "yes"
            ids["JOB"] = "stopped"
        subs = {"JOB": [ids.get("JOB", "stopped")], "ID": [ids.get("ID", "")], "REQUEST": [str(tmp / "readme-request.toml")],
                "DIR": [str(tmp / "restored")], "A B C": []}
        readme_line = line
        if " A B C" in line:
            jobs = [j["job_id"] for j in json.loads(r.sh("sweepd list --json").stdout)
                    if j["state"] == "done"][:3]
            assert len(jobs) == 3, jobs
            line = line.replace("A B C", " ".join(jobs))
        for cmd in expand(line, subs):
            out = r.sh(cmd)
            if cmd.startswith("sweepd submit"):
                ids["ID"] = out.stdout.strip().splitlines()[-1]
            if cmd.startswith("sweepd run examples/quickstart.toml"):
                ids["JOB"] = re.search(r"sweep job (\S+):", out.stdout).group(1)
        r.covered.add(readme_line)
    if "daemon" in ids:
        ids["daemon"].send_signal(signal.SIGTERM)
        ids["daemon"].wait(60)
