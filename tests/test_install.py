"""normlab installs like a package: a wheel built from this tree carries the config tree, and an
installed normlab composes, lists its options and trains from any directory (not the clone)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """normlab's wheel, installed (without its dependencies: this venv's serve) into a folder
    of its own that comes first on the path."""
    root = tmp_path_factory.mktemp("install")
    # Built from a copy of what the wheel is made of: setuptools writes build/ beside its source.
    source = root / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
        check=True,
        cwd=root,
        timeout=300,
    )
    (wheel,) = (root / "dist").glob("normlab-*.whl")
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    return site


def _run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_wheel_carries_the_config_tree(installed: Path, tmp_path: Path) -> None:
    conf = installed / "normlab" / "conf"
    assert (conf / "train.yaml").is_file()
    assert (conf / "experiment" / "santurkar2018" / "dln_suite.yaml").is_file()
    shipped = sorted(p.relative_to(conf) for p in conf.rglob("*.yaml"))
    in_tree = sorted(p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml"))
    assert shipped == in_tree
    code = (
        "import normlab, json; from normlab.config import CONF_DIR, compose_config; "
        "cfg = compose_config(['experiment=santurkar2018/dln_fig3b_ics']); "
        "print(json.dumps([normlab.__file__, str(CONF_DIR), cfg.name]))"
    )
    proc = _run(installed, tmp_path, "-c", code)
    assert proc.returncode == 0, proc.stderr
    module, conf_dir, name = json.loads(proc.stdout.strip().splitlines()[-1])
    assert module.startswith(str(installed)) and conf_dir == str(conf)  # not the clone's
    assert name == "santurkar2018/dln_fig3b_ics"


def test_an_installed_normlab_trains_from_another_directory(installed: Path, tmp_path: Path):
    script = installed / "bin" / "normlab-train"  # the console entry point the wheel installs
    env = {**os.environ, "PYTHONPATH": str(installed)}
    help_text = subprocess.run(
        [str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert help_text.returncode == 0, help_text.stderr
    groups = help_text.stdout
    assert "experiment/santurkar2018: " in groups and "dln_suite" in groups and "norm: " in groups
    proc = _run(
        installed,
        tmp_path,
        "-m",
        "normlab.train",
        "experiment=ioffe2015/fig1_mnist",
        "debug=smoke",
        "data=synthetic",
        "trainer.max_steps=5",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 5
