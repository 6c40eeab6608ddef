"""The training app in-process: trajectories, run statuses, summaries, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch
from conftest import run_cli

from normlab.config import compose_config
from normlab.errors import NormlabError
from normlab.train import run


def _run(overrides: list[str], run_dir: Path):
    return run(compose_config(overrides), run_dir, overrides)


def _losses(run_dir: Path) -> pd.Series:
    m = pd.read_csv(run_dir / "metrics.csv")
    return m[m.metric == "train/loss"].set_index("step").value


@pytest.mark.parametrize(
    "norm,bn_mode",
    [
        ("batch", "train"),
        ("batch", "eval"),
        ("none", "train"),
        ("noisy_batch", "train"),
        ("lp", "train"),
    ],
)
def test_activation_probe_does_not_change_training(norm, bn_mode, tiny_overrides, tmp_path) -> None:
    common = [
        *tiny_overrides,
        f"norm={norm}",
        "trainer.max_steps=30",
        "trainer.log_every_n_steps=1",
    ]
    probe_on = ["probe.activations.every_n_steps=1", f"probe.activations.bn_mode={bn_mode}"]
    on = _run([*common, *probe_on], tmp_path / "on")
    off = _run([*common, "probe=none"], tmp_path / "off")
    assert on.status == off.status == "finished"
    assert "act/layer3/unit0/p50" in set(pd.read_csv(tmp_path / "on" / "metrics.csv").metric)
    assert not (tmp_path / "off" / "act_hist.csv").exists()
    loss_on, loss_off = _losses(tmp_path / "on"), _losses(tmp_path / "off")
    assert len(loss_on) == 30 and loss_on.index.tolist() == list(range(30))
    assert loss_on.tolist() == loss_off.tolist()  # bit for bit
    state_on, state_off = on.module.state_dict(), off.module.state_dict()
    assert state_on.keys() == state_off.keys()
    if norm == "batch":
        assert any("running_var" in k for k in state_on)
    for key in state_on:
        assert torch.equal(state_on[key], state_off[key]), key


def test_probe_leaves_model_modes_buffers_and_rng_untouched() -> None:
    from normlab.data import SyntheticDataModule
    from normlab.models import MLP
    from normlab.probes import ActivationProbe

    model = MLP(norm={"name": "batch"})
    model.train()
    model(torch.rand(64, 784))  # running statistics away from their initial values
    model.layers["layer2"].eval()  # a mixed mode must come back as it was
    probe = ActivationProbe(layers=[1, 2, 3], unit={"layer": 3, "index": 5}, bn_mode="train")
    probe._x, _ = SyntheticDataModule(num_test=100).probe_batch(100)
    modes = {name: m.training for name, m in model.named_modules()}
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    params = {k: v.clone() for k, v in model.named_parameters()}
    rng = torch.get_rng_state()
    acts = probe.activations(model)
    assert set(acts) == {1, 2, 3} and acts[3].shape == (100, 100)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())
    assert all(torch.equal(v, params[k]) for k, v in model.named_parameters())
    assert torch.equal(torch.get_rng_state(), rng)
    # train mode: layer 1's probed activations are normalised with the probe batch's statistics
    torch.testing.assert_close(acts[1].mean(0), model.layers["layer1"].norm.bias, atol=1e-5, rtol=0)


def test_finished_run_writes_summary_metrics_and_histograms(tiny_overrides, tmp_path) -> None:
    result = _run([*tiny_overrides, "norm=batch", "seed=3"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "finished" == result.status
    assert summary["step"] == summary["max_steps"] == 40
    assert summary["seed"] == 3 and summary["config"]["norm"]["name"] == "batch"
    assert summary["experiment"] == "ioffe2015/fig1_mnist"
    assert {"torch", "lightning", "python"} <= set(summary["versions"])
    assert summary["wall_time_s"] > 0 and summary["device"] == "cpu"
    assert 0 <= summary["final_metrics"]["test/acc"] <= 1
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    assert sorted(metrics[metrics.metric == "test/acc"].step) == [20, 40]
    probe_steps = sorted(metrics[metrics.metric == "act/layer3/unit0/p50"].step)
    assert probe_steps == [0]  # the preset probes every 250 steps; 40 steps -> step 0 only
    hist = pd.read_csv(tmp_path / "act_hist.csv")
    assert set(hist.layer) == {1, 2, 3}
    # every probe example (the 500-example synthetic test set) x 100 units lands in a bin
    assert (hist.groupby(["step", "layer"])["count"].sum() == 500 * 100).all()


def test_diverged_run_stops_cleanly(tiny_overrides, tmp_path) -> None:
    result = _run([*tiny_overrides, "optim.lr=1e38", "model.init_std=10"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert result.status == summary["status"] == "diverged"
    step = summary["diverged_at_step"]
    assert step is not None and 0 <= step < 40
    # Training stopped right there, without applying the update of the non-finite loss.
    assert summary["step"] == step
    losses = _losses(tmp_path)
    assert losses[losses.index < step].map(float).notna().all()


def test_failed_run_records_the_error_and_reraises(tiny_overrides, tmp_path) -> None:
    with pytest.raises(RuntimeError):
        _run([*tiny_overrides, "model.in_features=100"], tmp_path)  # 784 pixels in, 100 expected
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"].startswith("RuntimeError")


def test_bad_probe_layer_fails_at_start_naming_the_valid_range(tiny_overrides, tmp_path) -> None:
    with pytest.raises(NormlabError, match=r"layer 7 .* valid layers: 1\.\.3"):
        _run([*tiny_overrides, "probe.activations.layers=[1,7]"], tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"


def test_missing_mnist_offline_fails_in_one_line(tmp_path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(
        [
            "data=mnist",
            f"data.root={empty}",
            "data.download=false",
            "logger=none",
            f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.data_dir={tmp_path / 'cache'}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("normlab: error: MNIST not found in data.root=") and str(empty) in last
    assert "data.root" in last and "Traceback" not in proc.stderr
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    assert json.loads(summary.read_text())["status"] == "failed"


def test_download_failure_names_the_root(tmp_path, monkeypatch) -> None:
    import normlab.data.mnist as mnist
    from normlab.errors import DataNotFoundError

    def offline(download_dir):
        raise OSError("network unreachable")

    monkeypatch.setattr(mnist, "download_mnist", offline)
    dm = mnist.MNISTDataModule(root=str(tmp_path / "ro"), download_dir=str(tmp_path / "cache"))
    with pytest.raises(
        DataNotFoundError, match=r"data.root=.*ro .*downloading it into .*cache failed"
    ):
        dm.prepare_data()


@pytest.mark.skipif(
    not (Path(__file__).parents[2] / "shared/data/MNIST/raw").is_dir(), reason="no local MNIST"
)
def test_mnist_reads_the_read_only_shared_copy_in_place() -> None:
    from conftest import SHARED_DATA

    from normlab.data import MNISTDataModule

    def snapshot(root: Path) -> dict:
        return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}

    before = snapshot(SHARED_DATA)
    dm = MNISTDataModule(root=str(SHARED_DATA), download_dir="/nonexistent", download=False)
    dm.setup()
    assert snapshot(SHARED_DATA) == before  # read in place: nothing added, nothing touched
    assert dm.train_x.shape == (60000, 28, 28) and dm.test_x.shape == (10000, 28, 28)
    assert torch.bincount(dm.test_y).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert not (Path("/nonexistent")).exists()


def test_single_run_of_a_sweeping_preset_warns_and_runs_its_base_point(tmp_path) -> None:
    proc = run_cli(
        [
            "experiment=ioffe2015/fig1_mnist",
            "debug=smoke",
            "data=synthetic",
            "trainer.max_steps=5",
            f"paths.runs_dir={tmp_path / 'runs'}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "defines a sweep (norm=none,batch seed=0,1,2)" in log and "Add -m" in log
    (summary,) = (tmp_path / "runs" / "ioffe2015" / "fig1_mnist").glob("*/summary.json")
    data = json.loads(summary.read_text())
    assert data["status"] == "finished" and data["config"]["norm"]["name"] == "none"
    assert data["seed"] == 0


class _StopAt(__import__("lightning").Callback):
    def __init__(self, step: int, error: type[BaseException]) -> None:
        self.step, self.error = step, error

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise self.error()


def test_ctrl_c_leaves_an_interrupted_run(tiny_overrides, tmp_path) -> None:
    cfg = compose_config(tiny_overrides)
    with pytest.raises(SystemExit):  # Lightning turns KeyboardInterrupt into SystemExit
        run(cfg, tmp_path, callbacks=[_StopAt(12, KeyboardInterrupt)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["step"] == 12


def test_fast_dev_run_is_never_finished_and_says_what_it_was(tiny_overrides, tmp_path) -> None:
    result = _run([*tiny_overrides, "debug=fast_dev_run"], tmp_path)
    assert result.status == "fast_dev_run"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "fast_dev_run" and summary["error"] is None


def test_a_run_directory_is_never_reused(tiny_overrides, tmp_path) -> None:
    _run([*tiny_overrides, "trainer.max_steps=5"], tmp_path)
    first = (tmp_path / "metrics.csv").read_text()
    with pytest.raises(NormlabError, match=r"already holds a run"):
        _run([*tiny_overrides, "trainer.max_steps=5"], tmp_path)
    assert (tmp_path / "metrics.csv").read_text() == first
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"


def test_resume_after_an_interruption_continues_the_same_run(tiny_overrides, tmp_path) -> None:
    common = [*tiny_overrides, "trainer.enable_checkpointing=true", "norm=batch"]
    full = _run(common, tmp_path / "full")
    with pytest.raises(SystemExit):  # killed at step 27; last.ckpt is from the check at step 20
        run(compose_config(common), tmp_path / "part", callbacks=[_StopAt(27, KeyboardInterrupt)])
    ckpt = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=False)["global_step"] == 20
    resumed = _run([*common, f"resume={ckpt}"], tmp_path / "part")
    assert resumed.status == "finished"
    # Mid-epoch (an epoch is 33 steps here): the same batches in the same order, so the same
    # weights as the uninterrupted run.
    for key, value in full.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[key], value, msg=key)


def test_bad_norm_option_fails_in_one_line_naming_the_choices(tmp_path) -> None:
    proc = run_cli(
        [
            "experiment=santurkar2018/dln_fig5b_lp",
            "debug=smoke",
            "norm=lp",
            "norm.p=3",
            f"paths.runs_dir={tmp_path / 'runs'}",
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "normlab: error: norm.p must be one of [1, 2, inf], got 3"
    (summary,) = (tmp_path / "runs").rglob("summary.json")
    assert json.loads(summary.read_text())["status"] == "failed"


def test_a_classifier_module_on_the_regression_model_names_the_fix(tmp_path) -> None:
    overrides = ["model=dln", "data=gaussian_linear", "debug=smoke", f"paths.runs_dir={tmp_path}"]
    with pytest.raises(Exception) as err:
        run(compose_config(overrides), tmp_path / "run", overrides)
    cause = err.value
    while cause is not None and not isinstance(cause, NormlabError):
        cause = cause.__cause__
    assert cause is not None, err.value
    assert "DLN has none; for a regression model use module=regression" in str(cause)


def test_a_deferred_finite_check_records_the_same_divergence_step(tiny_overrides, tmp_path) -> None:
    bad = [*tiny_overrides, "optim.lr=1e38", "model.init_std=10"]
    _run(bad, tmp_path / "every")
    every = json.loads((tmp_path / "every" / "summary.json").read_text())
    _run([*bad, "module.finite_check_every_n_steps=7"], tmp_path / "deferred")
    deferred = json.loads((tmp_path / "deferred" / "summary.json").read_text())
    assert every["status"] == deferred["status"] == "diverged"
    assert deferred["diverged_at_step"] == every["diverged_at_step"] == every["step"]
    # read at the next multiple of 7 (or at the end of training), not later
    assert every["step"] <= deferred["step"] <= every["step"] + 7


def test_a_deferred_finite_check_still_catches_the_last_steps(tiny_overrides, tmp_path) -> None:
    # 40 steps, read every 1000: only the end-of-training read can see the divergence
    bad = [*tiny_overrides, "optim.lr=1e38", "model.init_std=10"]
    _run([*bad, "module.finite_check_every_n_steps=1000"], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at_step"] < 40


def test_a_finite_check_cadence_below_one_is_refused(tiny_overrides, tmp_path) -> None:
    with pytest.raises(
        NormlabError, match=r"finite_check_every_n_steps=0: must be an integer >= 1"
    ):
        _run([*tiny_overrides, "module.finite_check_every_n_steps=0"], tmp_path)


def test_a_job_dirname_is_one_directory_cut_and_made_unique_when_long() -> None:
    from normlab.resolvers import MAX_DIRNAME_BYTES
    from normlab.resolvers import job_dirname as _job_dirname

    assert _job_dirname("norm=batch,seed=0", 3) == "norm=batch,seed=0"
    assert _job_dirname("", 3) == "job3"
    # a group under its paper names one directory, not a tree
    assert (
        _job_dirname("+santurkar2018/dln_point=batch_lr1e-6,seed=0", 0)
        == "+santurkar2018.dln_point=batch_lr1e-6,seed=0"
    )
    long = ",".join(f"probe.activations.every_n_steps={i}" for i in range(20))
    other = long.replace("=19", "=18")
    cut, cut_other = _job_dirname(long, 0), _job_dirname(other, 0)
    assert len(cut.encode()) <= MAX_DIRNAME_BYTES and cut != cut_other
    assert cut.startswith("probe.activations.every_n_steps=0,") and cut == _job_dirname(long, 7)


@pytest.mark.parametrize("before", [False, True])
def test_flushing_denormals_is_the_jobs_not_the_processs(before, tiny_overrides, tmp_path) -> None:
    # Flushing is processor state: left on, it changes every later float computation of the
    # process (hypothesis refuses to run under it).
    from normlab.train import flushes_denormals

    seen = []

    class Seen(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            seen.append(flushes_denormals())

    torch.set_flush_denormal(before)
    try:
        overrides = [*tiny_overrides, "trainer.max_steps=2", f"flush_denormal={not before}"]
        run(compose_config(overrides), tmp_path, overrides, callbacks=[Seen()])
        assert seen == [not before]
        assert flushes_denormals() is before
    finally:
        torch.set_flush_denormal(False)
