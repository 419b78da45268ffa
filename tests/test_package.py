"""The package: what `pip install .` installs (mwnet and nothing with a generic name), that it runs from any
directory through `python -m mwnet`, that the original's names still import from the checkout, that
pyproject.toml agrees with requirements*.txt, and that the readers of run files need no torch."""

import ast
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import CPU_ENV, ROOT, write_fashion

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

GENERIC = {"errors", "options", "training", "components", "reporting", "run_files", "loop_state", "device_loader"}


def requirements(name):
    lines = [line.split("#")[0].strip() for line in open(os.path.join(ROOT, name))]
    return [line for line in lines if line and not line.startswith("-r")]


def test_pyproject_matches_the_requirements():
    project = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))
    meta = project["project"]
    assert meta["requires-python"] == ">=3.10" and meta["name"] and meta["version"]
    assert meta["dependencies"] == requirements("requirements.txt")
    assert meta["optional-dependencies"]["dev"] == requirements("requirements-dev.txt")
    assert meta["scripts"] == {"mwnet": "mwnet.__main__:main"}

    def release(version):
        parts = [int(x) for x in version.split(".")]
        while parts and parts[-1] == 0:
            parts.pop()
        return parts

    floor = {k: release(v) for k, v in (line.split("==") for line in requirements("requirements-floor.txt"))}
    declared = {k: release(v) for k, v in (d.split(">=") for d in meta["dependencies"] if d.startswith("torch"))}
    assert floor == declared  # the floor the test command runs on is the one the project declares
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["mwnet*"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel `pip install .` would install, built from the checkout (setuptools from the registry)."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"  # a copy: setuptools builds in the source tree, which the checkout is not to get
    top = {".git", "runs", "results", "data", "build", ".pytest_cache", ".ruff_cache"}

    def ignore(folder, names):
        return [n for n in names if folder == ROOT and (n in top or n.startswith(".venv")) or n == "__pycache__"]

    shutil.copytree(ROOT, source, ignore=ignore)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 and "setuptools" in proc.stderr and "No matching distribution" in proc.stderr:
        pytest.skip("setuptools cannot be fetched to build the wheel")  # no registry
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = out.glob("*.whl")
    return path


def test_the_wheel_holds_the_package_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert top - dist_info == {"mwnet"}, top  # no module at the top level: neither ours nor the original's names
    files = {
        os.path.relpath(os.path.join(d, f), ROOT)
        for d, _, fs in os.walk(os.path.join(ROOT, "mwnet"))
        for f in fs
        if f.endswith(".py")
    }
    assert {n for n in names if n.endswith(".py")} == files  # every module of the package, and only those
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "mwnet = mwnet.__main__:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_installed_package_runs_a_dry_run_from_another_directory(wheel, tmp_path):
    """The wheel's files alone (not the checkout) on the path, in a directory that is not the checkout."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    data = tmp_path / "fm"
    write_fashion(str(data), per_class=30)
    env = {**CPU_ENV, "PYTHONPATH": str(site)}
    cmd = [sys.executable, "-m", "mwnet", "MW-Net.py", "--dataset", "fashionmnist", "--data_path", str(data)]
    cmd += ["--dry_run", "--batch_size", "16", "--num_meta", "100", "--out", "run"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "results.json").exists() and "finished: best test accuracy" in proc.stdout
    check = "import mwnet, os; print(os.path.dirname(mwnet.__file__))"
    where = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert where.stdout.strip() == str(site / "mwnet")  # the installed copy ran, not the checkout
    for name in GENERIC | {"resnet", "load_corrupted_data"}:
        probe = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, env=env, capture_output=True)
        assert probe.returncode != 0, f"{name} is importable from the installed package"


def test_the_original_names_import_from_the_checkout():
    code = (
        "from resnet import ResNet32, VNet; from wideresnet import WideResNet; from meta_layers import MetaModule; "
        "from load_corrupted_data import CIFAR10, CIFAR100, make_noisy_split, uniform_mix_C, flip_labels_C, "
        "flip_labels_C_two, hierarchical_C, corruption_matrix; import mwnet.models.resnet as r; "
        "import mwnet.data.noise as n; import wideresnet as w; "
        "assert ResNet32 is r.ResNet32 and make_noisy_split is n.make_noisy_split and w.VNet is VNet; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=CPU_ENV, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
    proc = subprocess.run(
        [sys.executable, "load_corrupted_data.py", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--corruption_type" in proc.stdout


def test_the_run_file_readers_import_without_torch():
    """The runner's, summarize.py's and plot.py's reader of run files: usable where torch is not installed."""
    code = (
        "import sys; sys.modules['torch'] = None; from mwnet.runs import run_files; "
        "from mwnet.tools import summarize, plot; print('ok')"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_one_place_per_dataset_and_method_and_no_file_or_function_too_long():
    """Outside mwnet/data/ no module compares against a dataset's name, outside mwnet/method/ none against a
    method's (the paper tables' specifications in summarize.py and ablations.py aside: their rows are methods
    and their cells datasets); models/ imports nothing of data/; no file of the package over 500 lines, no
    function over 80."""
    import ast
    import glob
    import re

    from mwnet.data.catalog import SPECS
    from mwnet.method import METHODS

    names = "|".join(map(re.escape, [*SPECS, *METHODS]))
    compared = re.compile(rf"""(==|!=|\bin\b)\s*[(\[{{]?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    tables = {"mwnet/tools/tables.py", "mwnet/tools/ablations.py"}
    found, long = [], []
    for path in sorted(glob.glob(os.path.join(ROOT, "mwnet", "**", "*.py"), recursive=True)):
        rel = os.path.relpath(path, ROOT)
        text = open(path).read()
        if rel.startswith(("mwnet/data/", "mwnet/method/")) or rel in tables:
            pass
        else:
            found += [f"{rel}: {m.group(0)}" for m in compared.finditer(text)]
        if rel.startswith("mwnet/models/"):
            found += [f"{rel}: imports data" for line in text.splitlines() if re.match(r"\s*from mwnet\.data", line)]
        if len(text.splitlines()) > 500:
            long.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 80:
                long.append(f"{rel}: {node.name} {node.end_lineno - node.lineno + 1} lines")
    assert not found and not long, found + long


# The package's floors, lowest first: a module imports only from its own part or from parts on lower floors.
FLOORS = {"errors": 0, "untrusted": 1, "cli": 1, "models": 2, "method": 2, "__init__": 2, "runs": 3, "data": 4}
FLOORS.update({"engine": 5, "tools": 6, "__main__": 6})


def import_graph():
    """{module: the package's modules it imports}, from every import statement in it, lazy ones included."""
    paths = glob.glob(os.path.join(ROOT, "mwnet", "**", "*.py"), recursive=True)
    names = {os.path.relpath(p, ROOT)[:-3].replace(os.sep, ".").removesuffix(".__init__"): p for p in paths}
    graph = {}
    for name, path in names.items():
        found = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module for a in node.names
                }
        graph[name] = {m for m in found if m in names and m != name}
    return graph


def part(module):
    """The part of the package a module belongs to: 'data' for mwnet.data.catalog, 'errors' for mwnet.errors."""
    words = module.split(".")
    return words[1] if len(words) > 1 else "__init__"


def test_the_import_graph_has_no_circle_and_no_arrow_up_a_floor():
    graph = import_graph()
    assert {part(m) for m in graph} <= set(FLOORS), {part(m) for m in graph} - set(FLOORS)
    up = [f"{m} -> {t}" for m in graph for t in graph[m] if part(m) != part(t) and FLOORS[part(t)] > FLOORS[part(m)]]
    assert not up, up
    assert not [m for m in graph if part(m) == "runs" and any(part(t) == "data" for t in graph[m])]
    state, circles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, circles
