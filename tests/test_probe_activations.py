"""The activation probe on its own, without a Trainer: per-unit moments and their changes
(Santurkar 2018 Fig. 8), conv activations, checkpointed references, and a model left untouched."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pandas as pd
import pytest
import torch
from torch import Tensor, nn

from normlab.errors import NormlabError
from normlab.models import DLN, MLP
from normlab.models.layers import numbered_layers
from normlab.norms import make_norm
from normlab.probes import ActivationProbe

NORMS = [None, {"name": "batch"}, {"name": "noisy_batch"}, {"name": "lp", "p": 1}]


class _ConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: dict | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = make_norm(norm, c_out, dims=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.norm(self.conv(x)))


class _TinyConvNet(nn.Module):
    """Two conv layers numbered as the papers' models are: (N, C, H, W) probed activations."""

    def __init__(self, norm: dict | None) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(
            {"layer1": _ConvLayer(2, 3, norm), "layer2": _ConvLayer(3, 4, norm)}
        )

    @property
    def hidden_layers(self) -> dict[int, nn.Module]:
        return numbered_layers(self.layers, _ConvLayer)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return x


class _Trainer(SimpleNamespace):
    """What the probe reads of a Trainer; `logged` collects what it logs."""

    def __init__(self, root: Path) -> None:
        super().__init__(global_step=0, is_global_zero=True, default_root_dir=str(root), logged={})
        self.loggers = [self]

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logged[step] = metrics


def _setup(probe: ActivationProbe, model: nn.Module) -> None:
    probe.setup(None, SimpleNamespace(model=model, modules=model.modules), "fit")


def _moments(acts: Tensor) -> tuple[Tensor, Tensor]:
    """Per-unit mean and biased variance, written out: units are dim 1, all else is samples."""
    per_unit = acts.double().transpose(0, 1).reshape(acts.shape[1], -1)
    mean = per_unit.mean(1)
    return mean, ((per_unit - mean[:, None]) ** 2).mean(1)


def _mean_abs(a: Tensor, b: Tensor) -> float:
    return (a - b).abs().mean().item()


def test_unit_moments_and_their_changes_match_a_hand_computation() -> None:
    torch.manual_seed(0)
    model = DLN(depth=3, width=4)  # norm=none: the probed activations are W1 x and W2 W1 x
    probe = ActivationProbe(layers=[1, 2])
    probe._x = torch.randn(50, 4)
    w1, w2 = model.layers["layer1"].linear.weight, model.layers["layer2"].linear.weight

    def hand() -> dict[int, tuple[Tensor, Tensor]]:
        a1 = probe._x.double() @ w1.detach().double().T
        return {1: _moments(a1), 2: _moments(a1 @ w2.detach().double().T)}

    calls = []
    for step, (scale, shift) in enumerate([(1.0, 0.0), (1.5, 0.3), (0.5, -0.2)]):
        with torch.no_grad():
            w1.mul_(scale).add_(shift)
            w2.add_(shift)
        calls.append(hand())
        metrics, _ = probe.measure(model, step * 100)
        for layer in (1, 2):
            key = f"act/layer{layer}"
            (mean, var), (mean0, var0) = calls[-1][layer], calls[0][layer]
            assert metrics[f"{key}/mean_drift"] == pytest.approx(_mean_abs(mean, mean0), abs=1e-6)
            assert metrics[f"{key}/var_drift"] == pytest.approx(_mean_abs(var, var0), rel=1e-5)
            if step == 0:
                assert metrics[f"{key}/mean_drift"] == metrics[f"{key}/var_drift"] == 0
                assert f"{key}/mean_change" not in metrics and f"{key}/var_change" not in metrics
                continue
            mean1, var1 = calls[-2][layer]
            assert metrics[f"{key}/mean_change"] == pytest.approx(_mean_abs(mean, mean1), rel=1e-5)
            assert metrics[f"{key}/var_change"] == pytest.approx(_mean_abs(var, var1), rel=1e-5)
    # the third call's change is against the second, its drift against the first: they differ
    assert metrics["act/layer2/var_change"] != pytest.approx(metrics["act/layer2/var_drift"])


def test_drift_is_measured_from_the_first_call_and_survives_a_checkpoint() -> None:
    torch.manual_seed(1)
    model = DLN(depth=4, width=5, norm={"name": "batch"})
    x = torch.randn(40, 5)

    def make() -> ActivationProbe:
        probe = ActivationProbe(layers=[1, 3], unit={"layer": 2, "index": 4})
        probe._x = x
        return probe

    def perturb() -> None:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))

    probe = make()
    for step in (0, 100):
        probe.measure(model, step)
        perturb()
    saved = io.BytesIO()
    torch.save(probe.state_dict(), saved)  # as Lightning stores callback state in a checkpoint
    saved.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(saved, weights_only=True))

    expected, _ = probe.measure(model, 200)
    got, _ = resumed.measure(model, 200)
    assert got == expected
    assert got["act/layer3/mean_drift"] > 0 and got["act/layer3/var_change"] > 0
    # a fresh probe would measure its drift from this call instead
    assert make().measure(model, 200)[0]["act/layer3/mean_drift"] == 0


def test_a_resumed_probe_does_not_probe_its_last_step_again(tmp_path) -> None:
    model = DLN(depth=4, width=5)
    probe = ActivationProbe(layers=[1])
    probe._x = torch.randn(8, 5)
    trainer = _Trainer(tmp_path)
    probe._probe(trainer, SimpleNamespace(model=model))
    resumed = ActivationProbe(layers=[1])
    resumed._x = probe._x
    resumed.load_state_dict(probe.state_dict())
    resumed._probe(trainer, SimpleNamespace(model=model))  # still step 0
    assert list(trainer.logged) == [0]
    assert len(pd.read_csv(tmp_path / ActivationProbe.HIST_FILE)) == resumed.hist_bins


@pytest.mark.parametrize("norm", [None, {"name": "batch"}], ids=["none", "batch"])
def test_conv_activations_pool_batch_and_positions_per_channel(norm, tmp_path) -> None:
    torch.manual_seed(2)
    model = _TinyConvNet(norm)
    probe = ActivationProbe(layers=[1, 2], unit={"layer": 2, "index": 3}, hist_bins=7)
    _setup(probe, model)
    probe._x = torch.randn(6, 2, 5, 5)
    trainer = _Trainer(tmp_path)
    first = probe.activations(model)
    probe._probe(trainer, SimpleNamespace(model=model))
    with torch.no_grad():
        model.layers["layer1"].conv.weight.mul_(2.0)
    trainer.global_step = 10
    second = probe.activations(model)
    probe._probe(trainer, SimpleNamespace(model=model))

    assert second[2].shape == (6, 4, 5, 5)
    metrics = trainer.logged[10]
    channel = second[2][:, 3].flatten()  # unit 3 = channel 3 over the batch and all positions
    for name, q in (("p15", 0.15), ("p50", 0.5), ("p85", 0.85)):
        assert metrics[f"act/layer2/unit3/{name}"] == pytest.approx(
            torch.quantile(channel, q).item()
        )
        assert metrics[f"act/layer2/{name}"] == pytest.approx(torch.quantile(second[2], q).item())
    for layer in (1, 2):
        (mean0, var0), (mean1, var1) = _moments(first[layer]), _moments(second[layer])
        change = metrics[f"act/layer{layer}/mean_change"]
        assert change == pytest.approx(_mean_abs(mean1, mean0), rel=1e-5, abs=1e-7)
        assert metrics[f"act/layer{layer}/var_drift"] == pytest.approx(
            _mean_abs(var1, var0), rel=1e-5, abs=1e-6
        )
    if norm:  # BN in train mode: each channel has mean beta = 0 and variance ~1 over batch x H x W
        mean, var = _moments(second[1])
        torch.testing.assert_close(mean, torch.zeros(3, dtype=torch.float64), atol=1e-6, rtol=0)
        torch.testing.assert_close(var, torch.ones(3, dtype=torch.float64), atol=1e-3, rtol=0)
        assert metrics["act/layer1/var_change"] < 1e-3  # BN undoes the scaled weights
    hist = pd.read_csv(tmp_path / ActivationProbe.HIST_FILE)
    counts = hist[hist.step == 10].groupby("layer")["count"].sum()
    assert counts.to_dict() == {1: 6 * 3 * 25, 2: 6 * 4 * 25}


@pytest.mark.parametrize("norm", [None, {"name": "batch"}], ids=["none", "batch"])
def test_unknown_layer_or_unit_fails_at_setup_naming_the_valid_range(norm) -> None:
    dln = DLN(depth=4, width=5, norm=norm)
    with pytest.raises(NormlabError, match=r"layer 4 is not a hidden layer.*valid layers: 1\.\.3"):
        _setup(ActivationProbe(layers=[1, 4]), dln)
    with pytest.raises(NormlabError, match=r"unit.index=5 out of range.*valid: 0\.\.4"):
        _setup(ActivationProbe(layers=[1], unit={"layer": 2, "index": 5}), dln)
    conv = _TinyConvNet(norm)  # the width of a conv layer is its number of channels
    with pytest.raises(NormlabError, match=r"unit.index=4 out of range for layer 2; valid: 0\.\.3"):
        _setup(ActivationProbe(layers=[1], unit={"layer": 2, "index": 4}), conv)
    _setup(ActivationProbe(layers=[1, 2], unit={"layer": 2, "index": 3}), conv)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("arch", ["dln", "mlp"])
@pytest.mark.parametrize("norm", NORMS, ids=["none", "batch", "noisy_batch", "lp"])
def test_probe_leaves_weights_buffers_and_rng_untouched(norm, arch, bn_mode) -> None:
    torch.manual_seed(3)
    if arch == "dln":
        model, x = DLN(depth=4, width=5, norm=norm), torch.randn(32, 5)
    else:
        model, x = (
            MLP(in_features=6, hidden=(5, 5, 5), out_features=3, norm=norm),
            torch.randn(32, 6),
        )
    model.train()
    model(x)  # running statistics away from their initial values, the noise step at 1
    model.layers["layer2"].eval()  # a mixed mode must come back as it was
    probe = ActivationProbe(layers=[1, 2, 3], unit={"layer": 3, "index": 4}, bn_mode=bn_mode)
    _setup(probe, model)
    probe._x = x
    state = {k: v.clone() for k, v in model.state_dict().items()}  # noisy BN: + its noise step
    modes = {name: m.training for name, m in model.named_modules()}
    rng = torch.get_rng_state()
    for step in (0, 1):
        metrics, _ = probe.measure(model, step)
    assert "act/layer3/var_change" in metrics and "act/layer3/unit4/p50" in metrics
    assert model.state_dict().keys() == state.keys()
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_noisy_bn_probe_sees_the_coming_training_steps_noise() -> None:
    torch.manual_seed(4)
    model = DLN(depth=4, width=5, norm={"name": "noisy_batch"})
    probe = ActivationProbe(layers=[1, 2, 3])
    probe._x = torch.randn(16, 5)
    acts = probe.activations(model)
    captured = {}
    model.layers["layer2"].norm.register_forward_hook(lambda m, a, out: captured.update(out=out))
    model.train()
    with torch.no_grad():
        model(probe._x)
    assert torch.equal(acts[2], captured["out"])


class _InterruptAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


def test_a_resumed_run_logs_the_drift_of_the_uninterrupted_one(tiny_overrides, tmp_path) -> None:
    from normlab.config import compose_config
    from normlab.train import run

    common = [
        *tiny_overrides,
        "trainer.enable_checkpointing=true",
        "norm=batch",
        "probe.activations.every_n_steps=5",
    ]
    run(compose_config(common), tmp_path / "full")
    with pytest.raises(SystemExit):  # interrupted at step 27; last.ckpt is from step 20
        run(compose_config(common), tmp_path / "part", callbacks=[_InterruptAt(27)])
    ckpt = tmp_path / "part" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["callbacks"]["ActivationProbe"]
    assert state["last_step"] == 15 and sorted(state["first_moments"]) == [1, 2, 3]
    run(compose_config([*common, f"resume={ckpt}"]), tmp_path / "part")

    def moved(run_dir: Path) -> pd.Series:
        metrics = pd.read_csv(run_dir / "metrics.csv")
        metrics = metrics[metrics.metric.str.contains("_drift|_change") & (metrics.step >= 20)]
        values = metrics.set_index(["step", "metric"])["value"]
        assert values.index.is_unique  # the resume cut back the rows logged after last.ckpt
        return values

    full, resumed = moved(tmp_path / "full"), moved(tmp_path / "part")
    assert sorted(set(full.index.get_level_values("step"))) == [20, 25, 30, 35, 40]
    pd.testing.assert_series_equal(resumed.sort_index(), full.sort_index())
