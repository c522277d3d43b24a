"""`pip install -e .` gives a sweepd whose data packages (etc, examples, systemd) import from the checkout."""

import shutil
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_editable_install_imports_the_data_packages(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".venv"))
    venv = tmp_path / "ev"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "-e", str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    code = ("import sweepd, sweepd.etc, sweepd.examples, sweepd.systemd\n"
            "from importlib import resources\n"
            f"assert sweepd.__file__.startswith({str(src)!r}), sweepd.__file__\n"
            "assert resources.files('sweepd.etc').joinpath('sweepd.toml').is_file()\n"
            "assert resources.files('sweepd.examples').joinpath('quickstart.toml').is_file()\n"
            "assert resources.files('sweepd.systemd').joinpath('sweepd.service').is_file()\n")
    r = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd="/", timeout=60)
    assert r.returncode == 0, r.stderr


def test_a_plain_install_ships_every_module_of_the_package(tmp_path):
    """`pip install .` (what the README and CI run) builds a wheel from pyproject's package list: a package
    missing there imports in the checkout and the editable install, and is missing for every user."""
    import zipfile

    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".venv"))
    import importlib.util

    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []  # else pip fetches it
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation,
                        "-w", str(tmp_path / "wheel"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    [wheel] = (tmp_path / "wheel").glob("sweepd-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    pkg = REPO / "daemon"
    modules = {str(p.relative_to(pkg)) for p in (pkg / "sweepd").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules and not modules - shipped, sorted(modules - shipped)
