"""sweepd as a daily tool: what a new user trips over, checked the way they would run it."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import sweepd, sweepd_env, write_request

LONG_ID = "a-rather-long-job-identifier-for-piping-2026"


@pytest.fixture(scope="module")
def foreground(tmp_path_factory):
    """One foreground sweep whose report has a flag (a trial fails: the fake NVML's 5th energy read)."""
    tmp = tmp_path_factory.mktemp("fg")
    req = write_request(tmp / "r.toml", backend="nvml", clocks=(1410, 945), trials=2, images="benchmark")
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_ENERGY_FAIL_AT="5",
                     XDG_CONFIG_HOME=str(tmp / "xdg"), COLUMNS="80")
    r = sweepd("run", req, "--root", tmp / "root", "--job-id", LONG_ID, env=env)
    assert r.returncode == 0, r.stderr
    return tmp, env, r


def test_version():
    r = sweepd("--version")
    assert r.returncode == 0 and r.stdout.startswith("sweepd ") and r.stdout.split()[1][0].isdigit()


def test_help_shows_no_placeholders_and_describes_every_option():
    for cmd in (["run"], ["demo"], ["list"], ["storage", "apply"], ["report"]):
        out = sweepd(*cmd, "--help").stdout
        assert "<bool>" not in out, (cmd, out)
    assert "log debug detail" in sweepd("demo", "--help").stdout


@pytest.mark.slow
def test_a_foreground_sweep_is_in_the_one_catalogue(foreground):
    tmp, env, run = foreground
    root = tmp / "root"
    # whatever the report doubts, run says too; library chatter stays off the terminal
    assert "flag:" in run.stdout and "trial 2 failed" in run.stdout, run.stdout
    for noise in ("torchvision", "accelerate", "FutureWarning", "font cache"):
        assert noise not in run.stdout + run.stderr, noise
    assert "images:" not in run.stdout  # images.mode = benchmark saves none: no folder to point at
    listing = json.loads(sweepd("list", "--json", "--root", root, env=env).stdout)
    [job] = [j for j in listing if j["job_id"] == LONG_ID]
    assert job["origin"] == "foreground" and job["state"] == "done"
    assert LONG_ID in sweepd("list", "--root", root, env=env).stdout  # piped: full ids, never cut to 80 columns
    st = sweepd("status", LONG_ID, "--root", root, env=env)
    assert st.returncode == 0 and "foreground" in st.stdout and "flag:" in st.stdout
    log = sweepd("logs", LONG_ID, "--root", root, env=env)
    assert log.returncode == 0 and "clock 1/2 1410MHz" in log.stdout and "clock 2/2 945MHz" in log.stdout
    c = sweepd("cancel", LONG_ID, "--root", root, env=env)
    assert c.returncode == 2 and "already done" in c.stderr


@pytest.mark.slow
def test_report_csv_has_each_column_once_and_report_takes_results_dir(foreground, tmp_path):
    tmp, env, _ = foreground
    out = sweepd("report", LONG_ID, "--csv", "--root", tmp / "root", env=env).stdout
    header = out.splitlines()[0].split(",")
    assert len(header) == len(set(header)) and header[:2] == ["job_id", "simulated"]
    assert {line.split(",")[1] for line in out.splitlines()[1:]} == {"false"}
    moved = tmp_path / "elsewhere"
    shutil.copytree(tmp / "root" / "results", moved)
    r = sweepd("report", LONG_ID, "--json", "--root", tmp_path / "empty-root", "--results-dir", moved, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["job_id"] == LONG_ID


def test_submit_without_a_daemon_says_so_and_the_request_is_visible(tmp_path):
    req = write_request(tmp_path / "r.toml")
    env = sweepd_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    r = sweepd("submit", req, "--root", tmp_path / "root", env=env)
    assert r.returncode == 0 and "no daemon is running" in r.stderr and "sweepd serve --once" in r.stderr
    sweep_id = r.stdout.strip()
    listing = json.loads(sweepd("list", "--json", "--root", tmp_path / "root", env=env).stdout)
    assert [(j["id"], j["state"], j["origin"]) for j in listing] == [(sweep_id, "waiting", "spool")]
    st = sweepd("status", sweep_id, "--root", tmp_path / "root", env=env)
    assert st.returncode == 0 and "waiting" in st.stdout and "no daemon" in st.stdout
    overall = sweepd("status", "--root", tmp_path / "root", env=env)
    assert "1 waiting" in overall.stdout and "no daemon" in overall.stdout
    c = sweepd("cancel", sweep_id, "--root", tmp_path / "root", env=env)
    assert c.returncode == 0 and "cancelled" in c.stdout
    assert not list((tmp_path / "root/spool/incoming").iterdir())
    kept = tmp_path / "root/spool/rejected" / f"{sweep_id}.toml"
    assert kept.read_text() == req.read_text()  # moved aside, never lost
    assert "cancelled by user" in kept.with_name(kept.name + ".error.txt").read_text()


READ_ONLY = textwrap.dedent("""
    import json, subprocess, sys
    ro, req = sys.argv[1], sys.argv[2]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro], check=True)
    out = {}
    for name, args in {"list": ["list"], "list-json": ["list", "--json"], "status": ["status"],
                       "status-id": ["status", "nope"], "report": ["report", "nope"], "archive": ["archive", "list"],
                       "run": ["run", req], "submit": ["submit", req], "serve": ["serve", "--once"],
                       "cancel": ["cancel", "nope"]}.items():
        r = subprocess.run([sys.executable, "-m", "sweepd", *args, "--root", ro], capture_output=True, text=True)
        out[name] = [r.returncode, r.stdout, r.stderr]
    import os
    out["left"] = sorted(os.listdir(ro))
    print(json.dumps(out))
""")


@pytest.mark.slow
def test_a_read_only_root_reads_and_refuses_writes_in_one_line(tmp_path):
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 and not unshare:
        pytest.skip("needs root or unshare to mount a read-only tmpfs: CI runs as root")
    ro = tmp_path / "ro"
    ro.mkdir()
    req = write_request(tmp_path / "r.toml")
    cmd = [sys.executable, "-c", READ_ONLY, str(ro), str(req)]
    cmd = ([unshare, "-rm"] if os.geteuid() != 0 else [unshare, "-m"] if unshare else []) + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, env=sweepd_env(XDG_CONFIG_HOME=str(tmp_path / "x")),
                       timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for name, got in out.items():
        if name == "left":
            continue
        rc, stdout, stderr = got
        assert "Traceback" not in stdout + stderr, (name, stderr)
        if name in ("list", "list-json", "status", "archive"):
            assert rc == 0, (name, stderr)
        elif name in ("run", "submit", "serve"):
            assert rc == 2 and len(stderr.strip().splitlines()) == 1 and str(ro) in stderr, (name, stderr)
            assert "Read-only file system" in stderr and "--root" in stderr
        else:
            assert rc == 2 and "no sweep 'nope'" in stderr, (name, stderr)
    assert json.loads(out["list-json"][1]) == []
    assert out["left"] == []  # nothing was created


@pytest.mark.parametrize("model, needle", [
    ("/no/such/model", "no such folder"),
    ("{tmp}/empty-model", "holds no diffusers pipeline"),
    ("not a hub id!", "nor a Hugging Face id"),
    ("someorg/not-cached-model", "not in the Hugging Face cache"),
])
def test_a_model_that_cannot_load_is_refused_before_anything_is_made(tmp_path, model, needle):
    (tmp_path / "empty-model").mkdir()
    model = model.replace("{tmp}", str(tmp_path))
    req = write_request(tmp_path / "r.toml")
    req.write_text(req.read_text().replace('model = "tiny"', f'model = "{model}"'))
    env = sweepd_env(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hf"), XDG_CONFIG_HOME=str(tmp_path / "x"))
    for cmd in ("run", "submit"):
        r = sweepd(cmd, req, "--root", tmp_path / "root", env=env)
        assert r.returncode == 2 and needle in r.stderr and "workload.model" in r.stderr, (cmd, r.stderr)
    assert not (tmp_path / "root" / "results").exists() and not (tmp_path / "root" / "spool").exists()


def test_simulated_boards_are_listed_by_their_sim_model():
    out = sweepd("gpus", "--backend", "sim").stdout
    assert "GPU 0" not in out
    assert all(f'sim_model = "{m}"' in out for m in ("A100", "H100", "V100"))


def test_install_service_takes_the_folders_and_the_settings_file(tmp_path):
    r = sweepd("install-service", "--unit-dir", tmp_path, "--root", tmp_path / "root", "--config", tmp_path / "s.toml",
               "--images-dir", tmp_path / "scratch", "--results-dir", tmp_path / "project")
    assert r.returncode == 0, r.stderr
    start = [line for line in (tmp_path / "sweepd.service").read_text().splitlines() if line.startswith("ExecStart=")][0]
    for flag, value in (("--root", "root"), ("--config", "s.toml"), ("--images-dir", "scratch"),
                        ("--results-dir", "project")):
        assert f"{flag} {tmp_path / value}" in start


def test_estimate_says_which_bytes_per_pixel_it_used(tmp_path):
    req = write_request(tmp_path / "r.toml")
    r = sweepd("estimate", req, "--root", tmp_path / "root", "--results-dir", tmp_path / "res")
    assert r.returncode == 0, r.stderr
    assert "3 bytes per pixel, the tiny model's random-weight noise" in r.stdout


def test_client_commands_import_nothing_heavy(tmp_path):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "sweepd", "list", "--root", str(tmp_path)],
                       capture_output=True, text=True, env=sweepd_env())
    assert r.returncode == 0, r.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    heavy = {m for m in loaded if m.split(".")[0] in ("torch", "diffusers", "transformers", "matplotlib", "numpy")}
    assert not heavy, sorted(heavy)


def test_storage_listings_show_long_ids_in_full_when_piped(tmp_path):
    from storage_helpers import make_job, write_policy

    root = tmp_path / "root"
    long_job = "x" * 60
    make_job(root / "images", long_job, clocks=(1410,), trials=1, per=1, age_days=60)
    policy = write_policy(tmp_path / "p.toml", '[[rules]]\nname = "age"\nmax_age = "30d"\n')
    env = sweepd_env(COLUMNS="80")
    for args in (["storage", "plan"], ["storage", "report"]):
        out = sweepd(*args, "--policy", policy, "--root", root, env=env).stdout
        assert f"job_{long_job}" in out, (args, out)
    assert sweepd("storage", "apply", "--policy", policy, "--root", root, env=env).returncode == 0
    assert f"job_{long_job}" in sweepd("archive", "list", "--root", root, env=env).stdout
