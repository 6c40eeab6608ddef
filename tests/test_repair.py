"""Runs that continue in their own directories (normlab.resume, normlab.sweep): what a job
directory of a re-launched sweep does, `resume=<run dir>` from the command line, whether a
recorded process still runs, and a sweep killed mid-way then launched again."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, run_cli
from omegaconf import OmegaConf

from normlab import process, resume, sweep
from normlab.errors import NormlabError
from normlab.results import find_runs

CONFIG = {"seed": 0, "optim": {"lr": 0.1}, "norm": {"name": "batch"}, "logger": {"wandb": None}}


def _run_dir(
    path: Path, status: str, checkpoint: bool = True, config: dict | None = None, **fields
) -> Path:
    path.mkdir(parents=True)
    summary = {"status": status, "step": 20, "config": config or CONFIG, **fields}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "metrics.csv").write_text("step,metric,value\n")
    if checkpoint:
        (path / "checkpoints").mkdir()
        (path / "checkpoints" / "last.ckpt").write_bytes(b"")
    return path


def _dead_process() -> dict:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    record = process.process_record_of(child.pid)
    child.kill()
    child.wait()
    return record


# ---------------------------------------------------------------------------------------------
# Whether a recorded process still runs.


def test_a_process_record_tells_a_live_process_from_a_gone_one(no_slurm) -> None:
    me = process.process_record()
    assert me["pid"] == os.getpid() and process.still_running(me) is True
    assert process.still_running(_dead_process()) is False
    # the same pid reused by another process (another start time), or a reboot since
    assert process.still_running({**me, "start_ticks": me["start_ticks"] - 1}) is False
    assert process.still_running({**me, "boot_id": "another-boot"}) is False
    # another host and no SLURM job to ask about: this machine cannot tell
    assert process.still_running({**me, "host": "elsewhere.example"}) is None
    assert process.still_running(None) is None


@pytest.fixture
def no_slurm(monkeypatch) -> None:
    """These tests' own SLURM environment, whatever the one they run in (e.g. under srun)."""
    for name in list(os.environ):
        if name.startswith("SLURM_"):
            monkeypatch.delenv(name)


def test_a_requeued_slurm_job_reads_its_earlier_run_as_gone(no_slurm, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    before = {**process.process_record(), "host": "node-that-ran-it-before"}
    assert before["slurm_job_id"] == "77" and before["slurm_restart_count"] == 0
    # another process of the same job (not requeued since) on another node: cannot tell
    assert process.still_running(before) is None
    # the same job after SLURM requeued it: its earlier run is over
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert process.still_running(before) is False
    # a live process of the same allocation on this host is alive
    assert process.still_running(process.process_record()) is True
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert process.process_record()["slurm_job_id"] == "70_3"


# ---------------------------------------------------------------------------------------------
# A job directory of a re-launched sweep.


def test_each_state_of_a_job_directory_has_its_plan(tmp_path) -> None:
    assert resume.plan_job(tmp_path / "new", CONFIG).action == "fresh"
    for status in ("finished", "diverged"):
        plan = resume.plan_job(_run_dir(tmp_path / status, status), CONFIG)
        assert plan.action == "skip" and status in plan.reason
    plan = resume.plan_job(_run_dir(tmp_path / "cut", "interrupted"), CONFIG)
    assert plan.action == "resume" and plan.checkpoint == tmp_path / "cut/checkpoints/last.ckpt"
    # a run whose process is gone is interrupted; without a checkpoint it starts over
    gone = _run_dir(tmp_path / "gone", "running", process=_dead_process())
    assert resume.plan_job(gone, CONFIG).action == "resume"
    bare = _run_dir(tmp_path / "bare", "interrupted", checkpoint=False)
    assert resume.plan_job(bare, CONFIG) == resume.JobPlan(
        "rerun",
        "interrupted with no checkpoint",
        summary=json.loads((bare / "summary.json").read_text()),
    )
    assert resume.plan_job(_run_dir(tmp_path / "failed", "failed"), CONFIG).action == "rerun"
    # refused at its start (a bad value: normlab.schema): it recorded no config, nothing ran
    refused = _run_dir(tmp_path / "refused", "failed", config={}, checkpoint=False)
    (refused / "summary.json").write_text(json.dumps({"status": "failed", "config": {}}))
    assert resume.plan_job(refused, CONFIG).action == "rerun"


def test_a_job_directory_of_another_config_or_a_live_run_is_refused(tmp_path) -> None:
    done = _run_dir(tmp_path / "done", "finished")
    with pytest.raises(NormlabError, match=r"another config \(optim.lr: 0.1 there, 0.5 now\)"):
        resume.plan_job(done, {**CONFIG, "optim": {"lr": 0.5}})
    # where the run was kept is not what it computed: the same job
    moved = {**CONFIG, "paths": {"runs_dir": "/elsewhere"}}
    assert resume.plan_job(done, moved).action == "skip"
    live = _run_dir(tmp_path / "live", "running", process=process.process_record())
    with pytest.raises(NormlabError, match=rf"is running now \(process {os.getpid()} on "):
        resume.plan_job(live, CONFIG)
    far = _run_dir(tmp_path / "far", "running", process={"host": "elsewhere", "pid": 1})
    with pytest.raises(NormlabError, match="cannot tell whether that process is gone.*resume="):
        resume.plan_job(far, CONFIG)


def test_a_job_run_again_sets_its_earlier_attempt_aside_where_no_figure_reads_it(tmp_path) -> None:
    job = _run_dir(tmp_path / "sweep" / "norm=batch", "failed")
    (job / ".hydra").mkdir()
    (job / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (job / "train.log").write_text("first attempt\n")
    moved = resume.set_aside(job)
    assert moved == job / ".previous-attempts" / "1"
    assert sorted(p.name for p in moved.iterdir()) == ["checkpoints", "metrics.csv", "summary.json"]
    assert sorted(p.name for p in job.iterdir()) == [".hydra", ".previous-attempts", "train.log"]
    assert find_runs([tmp_path / "sweep"]) == [job.resolve()]
    (job / "summary.json").write_text("{}")
    assert resume.set_aside(job).name == "2"


# ---------------------------------------------------------------------------------------------
# `resume=<run dir>`.


def test_resume_takes_the_run_directory_and_only_bookkeeping_overrides(tmp_path) -> None:
    config = {
        **CONFIG,
        "trainer": {"enable_progress_bar": "auto"},
        "data": {"root": "../shared/data"},
        "paths": {"root_dir": "/work/project"},
        "resume": None,
    }
    cut = _run_dir(tmp_path / "cut", "interrupted", config=config, overrides=["norm=batch"])
    # the run's own overrides may be repeated (the older form retyped them)
    cfg = resume.resumed_config(cut, ["trainer.enable_progress_bar=false", "norm=batch"])
    assert cfg.resume == str(cut / "checkpoints" / "last.ckpt")
    assert cfg.trainer.enable_progress_bar is False and cfg.optim.lr == 0.1
    # a data folder typed relative is the run's working directory's; keys the run predates
    # (here every one of `resources`) take today's defaults
    assert cfg.data.root == "/work/shared/data"
    assert cfg.resources.gpus_per_node == 0 and cfg.resources.cpus_per_task == 2
    # the older form, a checkpoint under the run's checkpoints/, names the same run; a
    # checkpoint of no run starts a new one (through Hydra)
    assert resume.resume_target(str(cut / "checkpoints" / "last.ckpt")) == cut.resolve()
    (tmp_path / "weights.ckpt").write_bytes(b"")
    assert resume.resume_target(str(tmp_path / "weights.ckpt")) is None
    refusals = {
        "optim.lr=0.5": r"'optim.lr=0.5' would change what it computes \(resume takes only .*paths",
        "logger=none": "logger is a config group of the run: set its keys",
        "logger.wandb.mode=online": "logger.wandb.mode is unset",  # the run logged to no W&B
        "+trainer.enable_progress_bar=true": "resume takes key=value for the run's own keys",
        "seed=1,2": "resume takes key=value for the run's own keys",
    }
    for line, message in refusals.items():
        with pytest.raises(NormlabError, match=message):
            resume.resumed_config(cut, ["trainer.enable_progress_bar=false", line])
    with pytest.raises(NormlabError, match="is already finished at step 20"):
        resume.resumed_config(_run_dir(tmp_path / "done", "finished"), [])
    bare = _run_dir(tmp_path / "bare", "interrupted", checkpoint=False)
    with pytest.raises(NormlabError, match="has no checkpoint .*run it again instead"):
        resume.resumed_config(bare, [])
    with pytest.raises(NormlabError, match="no such run directory or checkpoint file"):
        resume.resume_target(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NormlabError, match="holds no run"):
        resume.resume_target(str(tmp_path / "empty"))


def test_a_refused_command_line_leaves_the_runs_record_as_it_was(tmp_path) -> None:
    """Bad resumes and a new run pointed at a run's directory end with one line, and nothing of
    the run's record changes (Hydra's `.hydra/`: normlab.resolvers.job_record_subdir)."""
    cut = _run_dir(tmp_path / "cut", "interrupted", config={**CONFIG, "resume": None})
    (cut / ".hydra").mkdir()
    (cut / ".hydra" / "config.yaml").write_text("recorded: true\n")
    before = _files(cut)
    from normlab.train import resume_run

    refused = {
        "optim.lr=0.5": "would change what it computes",
        "-m": "takes no flags",
        f"hydra.run.dir={tmp_path}": "continues in its own directory",
    }
    for line, message in refused.items():
        with pytest.raises(NormlabError, match=message):
            resume_run(cut.resolve(), [f"resume={cut}", line])
    # the command line: one line, no traceback
    commands = [
        # refused by the checks inside the run (this record lacks keys every run has)
        ([f"resume={cut}"], "normlab: error: .* is missing"),
        (
            ["experiment=ioffe2015/fig1_mnist", "data=synthetic", f"hydra.run.dir={cut}"],
            rf"already holds a run \(summary.json, interrupted\); continue it with .*resume={cut}",
        ),
    ]
    for args, message in commands:
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert re.search(message, proc.stderr), proc.stderr[-2000:]
    after = _files(cut)
    # The log is not the record: Hydra's job logging appends the refusal to train.log.
    after.pop(cut / "train.log", None)
    assert after == before


# ---------------------------------------------------------------------------------------------
# The end of a sweep.


def test_a_sweep_lists_its_jobs_that_did_not_end_done(tmp_path, caplog) -> None:
    root = tmp_path / "sweep"
    _run_dir(root / "norm=none", "finished")
    _run_dir(root / "norm=batch", "failed", error="RuntimeError: boom")
    (root / "norm=layer" / ".hydra").mkdir(parents=True)
    assert sweep.job_outcomes(root) == {
        "failed": [("norm=batch", "RuntimeError: boom")],
        "finished": [("norm=none", None)],
        "never started": [("norm=layer", None)],
    }
    sweep.launched[:] = [root]
    try:
        with caplog.at_level("INFO", logger="normlab.sweep"):
            assert sweep.report_sweeps() is False
    finally:
        sweep.launched.clear()
    assert "1 failed, 1 finished, 1 never started" in caplog.text
    assert "failed: norm=batch (RuntimeError: boom)" in caplog.text
    assert "never started: norm=layer" in caplog.text


def test_each_launch_into_a_sweep_directory_keeps_the_records_of_the_earlier_ones(tmp_path) -> None:
    keep = sweep.KeepLaunchRecords()
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    for launch in ("first", "second", "third"):
        keep.on_multirun_start(config)
        (tmp_path / "multirun.yaml").write_text(launch)  # what Hydra writes next
    sweep.launched.clear()
    kept = {p.name: p.read_text() for p in tmp_path.glob("multirun*.yaml")}
    assert kept == {
        "multirun.1.yaml": "first",
        "multirun.2.yaml": "second",
        "multirun.yaml": "third",
    }


# ---------------------------------------------------------------------------------------------
# A sweep killed mid-way, then launched again into its own directory.


def _sweep_args(sweep_dir: Path, tmp_path: Path) -> list[str]:
    return [
        "-m",
        "experiment=ioffe2015/fig1_mnist",
        "debug=smoke",
        "data=synthetic",
        "seed=0",
        "logger=none",
        "trainer.enable_checkpointing=true",
        "trainer.max_steps=400",
        "trainer.val_check_interval=20",
        "probe.activations.every_n_steps=50",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def _files(job: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in job.rglob("*") if p.is_file()}


def _statuses(sweep_dir: Path) -> dict[str, str]:
    return {
        p.parent.name: json.loads(p.read_text())["status"] for p in sweep_dir.glob("*/summary.json")
    }


def _rows(job: Path, name: str) -> pd.DataFrame:
    rows = pd.read_csv(job / name, dtype=str)
    return rows.sort_values(list(rows.columns)).reset_index(drop=True)


def _figure_data(sweep_dir: Path, out: Path) -> pd.DataFrame:
    """The plotted numbers `scripts/figures.py SWEEP` writes (`_data.csv`), in this process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("figures", REPO / "scripts" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    assert figures.main([str(sweep_dir), "--out", str(out), "--formats", ""]) == 0
    return pd.read_csv(out / "ioffe2015" / "fig1_mnist_data.csv")


def test_a_killed_sweep_launched_again_ends_as_an_uninterrupted_one(tmp_path) -> None:
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "normlab.train", *_sweep_args(killed, tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    # SIGKILL once the first job is finished and the second has written its first checkpoint
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        statuses = _statuses(killed)
        running = [job for job, status in statuses.items() if status == "running"]
        checkpointed = running and (killed / running[0] / "checkpoints" / "last.ckpt").exists()
        if "finished" in statuses.values() and checkpointed:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the sweep ended before it could be killed"
    (done,) = [job for job, status in _statuses(killed).items() if status == "finished"]
    (cut,) = [job for job, status in _statuses(killed).items() if status == "running"]
    record = _files(killed / done)
    first_launch = (killed / "multirun.yaml").read_text()

    again = run_cli(_sweep_args(killed, tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert set(_statuses(killed).values()) == {"finished"} and len(_statuses(killed)) == 2
    # the finished job was skipped without touching a file, the killed one resumed
    assert _files(killed / done) == record
    summary = json.loads((killed / cut / "summary.json").read_text())
    assert [a["status"] for a in summary["attempts"]] == ["running"]
    assert "resuming from" in (killed / cut / "train.log").read_text()
    assert (killed / "multirun.1.yaml").read_text() == first_launch

    whole = tmp_path / "whole"
    assert run_cli(_sweep_args(whole, tmp_path), cwd=tmp_path).returncode == 0
    jobs = sorted(p.name for p in whole.glob("*/summary.json"))
    assert jobs == sorted(p.name for p in killed.glob("*/summary.json"))
    for job in _statuses(whole):
        for name in ("metrics.csv", "act_hist.csv"):
            pd.testing.assert_frame_equal(_rows(killed / job, name), _rows(whole / job, name))
    pd.testing.assert_frame_equal(
        _figure_data(killed, tmp_path / "fig_killed"), _figure_data(whole, tmp_path / "fig_whole")
    )


def test_a_resumed_run_continues_its_own_wandb_run(tiny_overrides, tmp_path) -> None:
    from lightning.pytorch.loggers import WandbLogger

    from normlab.config import compose_config
    from normlab.train import run

    overrides = [
        *tiny_overrides,
        "logger=wandb",
        "logger.wandb.mode=disabled",  # the same logger, without W&B's service
        "trainer.enable_checkpointing=true",
        "trainer.max_steps=20",
        "trainer.val_check_interval=10",
    ]

    def wandb_init(result) -> dict:
        (logger,) = [lg for lg in result.trainer.loggers if isinstance(lg, WandbLogger)]
        return logger._wandb_init

    run_dir = tmp_path / "run"
    first = run(compose_config(overrides), run_dir, overrides)
    wandb_id = first.summary["wandb_id"]
    assert len(wandb_id) == 8 and wandb_init(first)["id"] == wandb_id
    assert wandb_init(first)["resume"] == "never"  # a new run never appends to another's
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["status"] = "interrupted"  # as if stopped after its last checkpoint
    (run_dir / "summary.json").write_text(json.dumps(summary))
    resumed = run(resume.resumed_config(run_dir, []), run_dir, overrides)
    assert resumed.summary["wandb_id"] == wandb_id
    assert wandb_init(resumed)["id"] == wandb_id and wandb_init(resumed)["resume"] == "allow"
    # another run gets another id
    other = run(compose_config(overrides), tmp_path / "other", overrides)
    assert other.summary["wandb_id"] != wandb_id


# ---------------------------------------------------------------------------------------------
# Launching a sweep on a cluster.


def test_a_launch_without_a_partition_on_a_cluster_without_a_default_is_refused(tmp_path) -> None:
    fake = tmp_path / "bin"  # a cluster's sinfo: two partitions, neither the default (no '*')
    fake.mkdir()
    (fake / "sinfo").write_text("#!/bin/sh\necho gpu\necho cpu\n")
    (fake / "sinfo").chmod(0o755)
    args = ["-m", "experiment=ioffe2015/fig1_mnist", "data=synthetic", "hydra/launcher=slurm"]
    proc = subprocess.run(
        [sys.executable, "-m", "normlab.train", *args],
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    expected = "no default partition; set hydra.launcher.partition=<name>, one of ['cpu', 'gpu']"
    assert expected in proc.stderr, proc.stderr[-2000:]


def test_a_sweep_whose_jobs_ask_for_different_resources_is_refused_on_a_job_array() -> None:
    cpu = {"gpus_per_node": 0, "cpus_per_task": 2}
    gpu = {"gpus_per_node": 1, "cpus_per_task": 8}
    points = [["scale=cpu"], ["scale=paper"]]
    with pytest.raises(NormlabError, match=r"asks? for 2: .*'gpus_per_node': 0.* for 'scale=cpu'"):
        sweep.check_one_job_shape(["hydra/launcher=slurm"], points, [cpu, gpu])
    sweep.check_one_job_shape(["hydra/launcher=slurm"], points, [cpu, cpu])
    sweep.check_one_job_shape([], points, [cpu, gpu])  # one job after another: each its own


@pytest.mark.slow
@pytest.mark.ddp
def test_resume_under_ddp_continues_with_every_rank(tiny_overrides, tmp_path) -> None:
    """Under `strategy=ddp` Lightning starts rank 1 by running `resume=<run dir>` again while
    rank 0's record says `running`: rank 1 continues with it (and finds no Hydra to follow)."""
    from normlab.config import compose_config
    from normlab.train import run

    overrides = [
        *tiny_overrides,
        "logger=none",
        "trainer.enable_checkpointing=true",
        "trainer.max_steps=60",
        "trainer.val_check_interval=30",
    ]
    run_dir = tmp_path / "run"
    assert run(compose_config(overrides), run_dir, overrides).status == "finished"
    summary = json.loads((run_dir / "summary.json").read_text())
    # as if it were a two-rank run stopped at its checkpoint of step 60 of 90
    summary["status"] = "interrupted"
    summary["config"]["trainer"].update(max_steps=90, strategy="ddp", devices=2, accelerator="cpu")
    (run_dir / "summary.json").write_text(json.dumps(summary))
    proc = run_cli([f"resume={run_dir}"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert resumed["status"] == "finished" and resumed["step"] == 90
    rows = pd.read_csv(run_dir / "metrics.csv")
    assert not rows.duplicated(["step", "metric"]).any()
    assert rows.query("metric == 'test/acc'").step.tolist() == [30, 60, 90]
