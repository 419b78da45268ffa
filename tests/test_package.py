"""The package: pyproject.toml agrees with requirements*.txt and lists every module; the readers need no torch."""

import glob
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def requirements(name):
    lines = [line.split("#")[0].strip() for line in open(os.path.join(ROOT, name))]
    return [line for line in lines if line and not line.startswith("-r")]


def test_pyproject_matches_the_requirements_and_the_modules():
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))
    meta = project["project"]
    assert meta["requires-python"] == ">=3.10" and meta["name"] and meta["version"]
    assert meta["dependencies"] == requirements("requirements.txt")
    assert meta["optional-dependencies"]["dev"] == requirements("requirements-dev.txt")
    assert re.fullmatch(r"ruff==[\d.]+", next(d for d in meta["optional-dependencies"]["dev"] if d.startswith("ruff")))
    modules = sorted(
        os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "*.py")) if "-" not in os.path.basename(p)
    )
    assert project["tool"]["setuptools"]["py-modules"] == modules


def test_the_run_file_readers_import_without_torch():
    """The runner's, summarize.py's and plot.py's reader of run files: usable where torch is not installed."""
    code = "import sys; sys.modules['torch'] = None; import run_files; from scripts import summarize, plot; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
