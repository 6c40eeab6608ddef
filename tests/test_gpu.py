"""The GPU path of the VGG experiments (Santurkar 2018 on CIFAR-10): bf16-mixed, channels_last and
compile.enabled on CUDA, through `normlab.train.run` on the synthetic CIFAR set.

Marked `gpu`: deselected by default (pyproject's addopts); `pytest -m gpu tests/test_gpu.py` runs
them, and they skip where `torch.cuda.is_available()` is false. The CPU counterparts:
tests/test_vgg.py (channels_last), tests/test_probes.py (probes leave training bit-identical),
tests/test_compile.py (compiled training matches eager)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from normlab.config import compose_config
from normlab.train import run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(autouse=True)
def restore_global_flags() -> Iterator[None]:
    # trainer.deterministic sets torch's process-wide determinism flags; compile fills dynamo's
    # caches: each test leaves them as it found them.
    import torch._dynamo

    flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
    torch.backends.cudnn.benchmark = flags[2]


def vgg_overrides(tmp_path: Path, *extra: str) -> list[str]:
    """A small VGG-16 (channels 4..32) on synthetic CIFAR, a few steps on the GPU, W&B off."""
    return [
        "data=synthetic_cifar",
        "data.batch_size=32",
        "model=vgg",
        "model.width=0.0625",
        "norm=batch",
        "debug=smoke",
        "trainer.accelerator=gpu",
        "trainer.max_steps=6",
        "trainer.log_every_n_steps=1",
        "optim.lr=0.05",
        f"paths.runs_dir={tmp_path / 'runs'}",
        *extra,
    ]


def metric(run_dir: Path, name: str) -> list[float]:
    return pd.read_csv(run_dir / "metrics.csv").query("metric == @name").value.tolist()


def test_vgg_trains_in_bf16_with_channels_last(tmp_path) -> None:
    overrides = vgg_overrides(
        tmp_path,
        "trainer.precision=bf16-mixed",
        "model.channels_last=true",
        "trainer.val_check_interval=6",
    )
    result = run(compose_config(overrides), tmp_path / "run", overrides)
    assert result.status == "finished"
    assert result.summary["device"].startswith("cuda")
    kernel = result.module.model.layers["layer1"].conv.weight
    assert kernel.is_cuda and kernel.dtype == torch.float32  # bf16-mixed: float32 weights
    assert kernel.is_contiguous(memory_format=torch.channels_last)
    losses = metric(tmp_path / "run", "train/loss")
    assert len(losses) == 6 and np.isfinite(losses).all()
    test_loss = metric(tmp_path / "run", "test/loss")
    assert len(test_loss) == 1 and np.isfinite(test_loss).all()
    assert result.summary["final_metrics"]["train/loss"] == losses[-1]


@pytest.mark.parametrize("norm,method", [("batch", "vmap"), ("noisy_batch", "loop")])
def test_probes_in_bf16_leave_training_bit_identical(norm, method, tmp_path, monkeypatch) -> None:
    # As tests/test_probes.py on the CPU: ICS and landscape at every step, recomputed in the
    # precision plugin's autocast context, must not change the run. Bit for bit on a GPU needs
    # deterministic kernels in both runs (cuDNN's convolution algorithms); "warn" rather than
    # true because torch flags max-pool's backward, exact here (2x2 pools do not overlap).
    # (On the CPU, landscape's vmap fails under bf16 autocast: batch_norm's CPU kernel refuses
    # bf16 activations with float32 batched running statistics.)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    common = vgg_overrides(
        tmp_path,
        f"norm={norm}",
        "trainer.precision=bf16-mixed",
        "model.channels_last=true",
        "trainer.deterministic=warn",
    )
    probes_on = [
        "probe=[ics,landscape]",
        "probe.ics.layers=[5,10]",
        "probe.ics.every_n_steps=1",
        "probe.landscape.every_n_steps=1",
        "probe.landscape.eta_lo=0.5",
        "probe.landscape.eta_hi=4",
        "probe.landscape.spacing=linear",
        "probe.landscape.num_etas=4",
        f"probe.landscape.method={method}",
    ]
    on = run(compose_config([*common, *probes_on]), tmp_path / "on", common)
    off = run(compose_config([*common, "probe=none"]), tmp_path / "off", common)
    assert on.status == off.status == "finished"
    metrics = pd.read_csv(tmp_path / "on" / "metrics.csv")
    probed = metrics[metrics.metric.isin(["ics/layer10/cos", "landscape/beta_eff"])]
    assert len(probed) == 2 * 6 and np.isfinite(probed.value).all()
    losses = [metric(tmp_path / d, "train/loss") for d in ("on", "off")]
    assert len(losses[0]) == 6 and losses[0] == losses[1]
    state_on, state_off = on.module.state_dict(), off.module.state_dict()
    assert state_on.keys() == state_off.keys()
    for key in state_on:
        assert state_on[key].is_cuda
        assert torch.equal(state_on[key], state_off[key]), key


@pytest.mark.parametrize(
    "precision,channels_last,rtol",
    [("32-true", "false", 1e-4), ("bf16-mixed", "true", 2e-2)],  # bf16: ~3 significant digits
)
def test_compiled_vgg_trains_and_its_first_loss_matches_eager(
    precision, channels_last, rtol, tmp_path
) -> None:
    from torch._dynamo.utils import counters

    common = vgg_overrides(
        tmp_path,
        f"trainer.precision={precision}",
        f"model.channels_last={channels_last}",
        "trainer.val_check_interval=6",
        "trainer.enable_checkpointing=true",
    )
    eager = run(compose_config(common), tmp_path / "eager", common)
    counters.clear()
    compiled = run(compose_config([*common, "compile.enabled=true"]), tmp_path / "compiled", common)
    assert eager.status == compiled.status == "finished"
    assert compiled.module.model._compiled_call_impl is not None
    assert counters["stats"]["unique_graphs"] >= 2  # training and evaluation
    losses = {d: metric(tmp_path / d, "train/loss") for d in ("eager", "compiled")}
    assert len(losses["compiled"]) == 6 and np.isfinite(losses["compiled"]).all()
    # step 0: the same weights and batch, so the same loss up to kernel rounding
    assert losses["compiled"][0] == pytest.approx(losses["eager"][0], rel=rtol)
    assert np.isfinite(metric(tmp_path / "compiled", "test/loss")).all()
    checkpoints = [
        torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for d in ("eager", "compiled")
    ]
    assert list(checkpoints[1]) == list(checkpoints[0]) == list(eager.module.state_dict())
