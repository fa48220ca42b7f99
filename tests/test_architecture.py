"""The architecture rules in pyproject.toml's import-linter contracts hold, and the check can fail."""

import pathlib
import re
import shutil
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT = pathlib.Path(sys.executable).with_name("lint-imports")
PACKAGES = ("shared", "controlplane", "agent", "a4c", "tests", "bench")
LAYERS = "control plane layers: entry points down to the pure domain"


def _lint(cwd: pathlib.Path) -> subprocess.CompletedProcess:
    # PYTHONPATH: in a copy, the copy's packages are the ones analysed, not the installed tree.
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, capture_output=True, text=True, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def _contracts() -> int:
    return len(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"])


def test_import_contracts_are_kept():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(rf"Contracts: {_contracts()} kept, 0 broken\.", proc.stdout), proc.stdout


def _copy(tmp_path: pathlib.Path) -> pathlib.Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "static", "node_modules"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _broken(proc: subprocess.CompletedProcess, contract: str, edge: str) -> None:
    assert proc.returncode != 0
    assert f"{contract} BROKEN" in proc.stdout, proc.stdout
    assert edge in proc.stdout, proc.stdout
    assert re.search(rf"Contracts: {_contracts() - 1} kept, 1 broken\.", proc.stdout), proc.stdout


def test_a_back_edge_breaks_its_contract_and_fails_the_check(tmp_path):
    tree = _copy(tmp_path)
    (tree / "shared" / "back_edge.py").write_text("import controlplane.settings  # a deliberate back edge\n")
    _broken(_lint(tree), "shared imports neither side", "shared.back_edge -> controlplane.settings")


def test_a_test_importing_a_benchmark_fails_the_check(tmp_path):
    tree = _copy(tmp_path)
    (tree / "tests" / "back_edge.py").write_text("import bench.machine  # a deliberate back edge\n")
    _broken(_lint(tree), "tests never import benchmarks", "tests.back_edge -> bench.machine")


def test_a_lower_control_plane_layer_importing_a_higher_one_fails_the_check(tmp_path):
    tree = _copy(tmp_path)
    (tree / "controlplane" / "db" / "back_edge.py").write_text("import controlplane.services.jobs  # a deliberate back edge\n")
    _broken(_lint(tree), LAYERS, "controlplane.db.back_edge -> controlplane.services.jobs")


def test_a_control_plane_module_in_no_layer_fails_the_check(tmp_path):
    tree = _copy(tmp_path)
    (tree / "controlplane" / "unplaced.py").write_text('"""A module nobody gave a layer."""\n')
    proc = _lint(tree)
    assert proc.returncode != 0
    assert f"{LAYERS} BROKEN" in proc.stdout, proc.stdout
    assert "controlplane.unplaced" in proc.stdout, proc.stdout
