"""The ICS and landscape probes (Santurkar 2018 Def. 2.1, Sec. 3.2) against brute force on tiny
nets, their wiring into training, and the guarantee that probes never change a run."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from normlab.config import compose_config
from normlab.models import DLN
from normlab.norms import frozen_noise, seed_noise
from normlab.probes import ICSProbe, LandscapeProbe
from normlab.probes.functional import detached_parameters, gradients_along
from normlab.probes.ics import ics_gradients, ics_metrics
from normlab.probes.landscape import eta_grid, landscape_metrics
from normlab.train import run

NORMS = [
    {"name": "none"},
    {"name": "batch"},
    {"name": "noisy_batch"},
    {"name": "lp", "p": 1},
]


def sum_sq(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out - y).pow(2).sum()


def tiny_net(norm: dict, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = DLN(depth=5, width=4, norm=norm)
    seed_noise(model, seed=3)
    return model.train()


def data(n: int = 32, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=gen), torch.randn(n, 4, generator=gen)


def layer_weight(model: nn.Module, i: int) -> torch.Tensor:
    layer = model.layers[f"layer{i}"]
    return (layer.linear if hasattr(layer, "linear") else layer).weight


def real_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y) -> None:
    optimizer.zero_grad()
    sum_sq(model(x), y).backward()
    optimizer.step()


@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n["name"])
def test_g_prime_is_the_gradient_of_a_copy_whose_earlier_layers_took_the_optimizer_step(norm):
    model = tiny_net(norm)
    x, y = data()
    # Momentum with a history: the update is not -lr * g, so an assumed SGD step would be caught.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    real_step(model, optimizer, x, y)
    before_model = copy.deepcopy(model)  # W^t (noisy BN: also the noise step of step t)
    before = {n: p.clone() for n, p in detached_parameters(model).items()}
    real_step(model, optimizer, x, y)
    after = detached_parameters(model)
    layers = [1, 3, 5]
    with frozen_noise(model, replay_last=True):
        grads = ics_gradients(model, sum_sq, x, y, before, after, layers)

    for i in layers:
        # Brute force: a deep copy at W^t whose layers 1..i-1 (weights and norm gamma/beta) are
        # replaced by the stepped model's; every later layer keeps W^t.
        mixed = copy.deepcopy(before_model)
        with torch.no_grad():
            for name, p in mixed.named_parameters():
                number = int(name.split(".")[1].removeprefix("layer"))
                if number < i:
                    p.copy_(after[name])
        changed = {n for n, p in mixed.named_parameters() if not torch.equal(p, before[n])}
        assert all(int(n.split(".")[1].removeprefix("layer")) < i for n in changed)
        assert bool(changed) == (i > 1)
        mixed.zero_grad()
        sum_sq(mixed(x), y).backward()
        g_ref = copy.deepcopy(before_model)
        g_ref.zero_grad()
        sum_sq(g_ref(x), y).backward()
        g, g_prime = grads[i]
        torch.testing.assert_close(g, layer_weight(g_ref, i).grad.flatten(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(
            g_prime, layer_weight(mixed, i).grad.flatten(), rtol=1e-5, atol=1e-7
        )
    # no earlier layer for layer 1: G' = G exactly; deeper layers do see a shift
    assert torch.equal(grads[1][0], grads[1][1])
    assert not torch.equal(grads[5][0], grads[5][1])


def test_ics_metrics_are_the_l2_distance_and_the_cosine() -> None:
    g, g2 = torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])
    l2, cos = ics_metrics(g, g2)
    assert l2 == pytest.approx(2**0.5) and cos == pytest.approx(24 / 25)
    assert ics_metrics(g, g) == (0.0, pytest.approx(1.0))


@pytest.mark.parametrize("method", ["vmap", "loop"])
@pytest.mark.parametrize("norm", NORMS, ids=lambda n: n["name"])
def test_landscape_walk_equals_a_loop_over_deep_copies(norm, method) -> None:
    model = tiny_net(norm)
    x, y = data()
    model.zero_grad()
    loss = sum_sq(model(x), y)  # the step's forward (noisy BN draws this step's noise)
    loss.backward()
    g = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    state = copy.deepcopy(model.state_dict())
    etas = eta_grid(0.01, 30.0, 6, "log").float() * 1e-3
    with frozen_noise(model, replay_last=True):
        losses, grads = gradients_along(
            model, sum_sq, detached_parameters(model), g, etas, x, y, method
        )
    g_flat = torch.cat([t.flatten() for t in g.values()])
    metrics, grad_diff = landscape_metrics(losses, grads, g_flat, etas)

    ref_losses, ref_diffs = [], []
    for eta in etas:
        copy_ = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in copy_.named_parameters():
                p.sub_(eta * g[name])
        copy_.zero_grad()
        if norm["name"] == "noisy_batch":  # the copy replays the step's noise, like the probe
            for m in copy_.modules():
                if hasattr(m, "noise_step"):
                    m.noise_step -= 1
        loss_eta = sum_sq(copy_(x), y)
        loss_eta.backward()
        ref_losses.append(loss_eta.item())
        ref_grad = torch.cat([p.grad.flatten() for p in copy_.parameters()])
        ref_diffs.append(torch.linalg.vector_norm(ref_grad - g_flat).item())
    ref_losses, ref_diffs = torch.tensor(ref_losses), torch.tensor(ref_diffs)
    torch.testing.assert_close(losses, ref_losses, rtol=1e-5, atol=0)
    # ||g_eta - g|| at the smallest etas cancels: its round-off is ~eps * ||g||, whatever eta
    round_off = 1e-6 * torch.linalg.vector_norm(g_flat).item()
    torch.testing.assert_close(grad_diff, ref_diffs, rtol=1e-5, atol=round_off)
    assert metrics["landscape/loss_min"] == pytest.approx(ref_losses.min().item(), rel=1e-5)
    assert metrics["landscape/grad_diff_max"] == pytest.approx(ref_diffs.max().item(), rel=1e-5)
    beta = (ref_diffs / (etas * torch.linalg.vector_norm(g_flat))).max().item()
    assert metrics["landscape/beta_eff"] == pytest.approx(beta, rel=1e-5)
    # the probe left the model as it was: weights, buffers (running statistics) and noise step
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_eta_grid_spans_the_range() -> None:
    log = eta_grid(0.01, 30.0, 5, "log")
    assert log[0].item() == pytest.approx(0.01) and log[-1].item() == pytest.approx(30.0)
    assert torch.allclose(log[1:] / log[:-1], (log[1] / log[0]).expand(4))
    assert eta_grid(0.5, 4.0, 8, "linear").diff().allclose(torch.tensor(0.5, dtype=torch.float64))


# --- in training -----------------------------------------------------------------------------


def dln_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "experiment=santurkar2018/dln_fig5b_lp",
        "debug=smoke",
        "model.depth=6",
        "trainer.log_every_n_steps=1",
        f"paths.runs_dir={tmp_path / 'runs'}",
        *extra,
    ]


class Recorder:
    """A callback that keeps deep copies of the model before and after step 0, and its batch."""

    def __init__(self) -> None:
        from lightning.pytorch import Callback

        recorder = self

        class _Callback(Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                if trainer.global_step == 0:
                    recorder.before = copy.deepcopy(pl_module.model)
                    recorder.batch = batch

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step == 1:
                    recorder.after = copy.deepcopy(pl_module.model)

        self.callback = _Callback()


def layer_of(name: str) -> int:
    return int(name.split(".")[1].removeprefix("layer"))


def brute_force_step(before: nn.Module, after: nn.Module, x, y, layers, etas):
    """ICS's (G, G') per layer and the landscape walk's (loss, grad change) per eta, on deep
    copies of the model before and after a step, with `.backward()`."""

    def grads_of(model: nn.Module) -> dict[str, torch.Tensor]:
        # one forward per copy: a noisy-BN copy draws the step's noise once
        model.zero_grad()
        loss = sum_sq(model(x), y)
        loss.backward()
        model.loss = loss.item()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    g = grads_of(copy.deepcopy(before))
    ics = {}
    for i in layers:
        mixed = copy.deepcopy(before)
        with torch.no_grad():
            for name, p in mixed.named_parameters():
                if layer_of(name) < i:
                    p.copy_(dict(after.named_parameters())[name])
        weight = next(n for n in g if layer_of(n) == i and g[n].dim() == 2)
        ics[i] = ics_metrics(g[weight].flatten(), grads_of(mixed)[weight].flatten())
    g_flat = torch.cat([t.flatten() for t in g.values()])
    walk = []
    for eta in etas:
        moved = copy.deepcopy(before)
        with torch.no_grad():
            for name, p in moved.named_parameters():
                p.sub_(eta * g[name])
        g_eta = torch.cat([t.flatten() for t in grads_of(moved).values()])
        walk.append((moved.loss, torch.linalg.vector_norm(g_eta - g_flat).item()))
    return ics, walk, torch.linalg.vector_norm(g_flat).item()


@pytest.mark.parametrize("norm,method", [("batch", "vmap"), ("noisy_batch", "loop")])
def test_probes_in_training_measure_step_t_with_the_real_update(norm, method, tmp_path) -> None:
    # Adam: the real update is nothing like -lr * g. The probes' step-0 numbers must equal brute
    # force on deep copies of the model before and after step 0 (noisy BN: the copies draw the
    # step's own noise, as the probes do).
    overrides = dln_overrides(
        tmp_path,
        f"norm={norm}",
        "probe=[ics,landscape]",
        "probe.ics.layers=[1,2,5]",
        "probe.ics.every_n_steps=3",
        "probe.landscape.every_n_steps=3",
        f"probe.landscape.method={method}",
        "+optim.betas=[0.9,0.99]",
        "optim._target_=torch.optim.Adam",
        "optim.lr=1e-3",
        "~optim.momentum",
        "trainer.max_steps=7",
    )
    recorder = Recorder()
    result = run(
        compose_config(overrides), tmp_path / "run", overrides, callbacks=[recorder.callback]
    )
    assert result.status == "finished"
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    ics = metrics[metrics.metric.str.startswith("ics/")]
    assert sorted(ics.step.unique()) == [0, 3, 6]
    assert set(ics.metric) == {f"ics/layer{i}/{m}" for i in (1, 2, 5) for m in ("l2", "cos")}
    curves = pd.read_csv(tmp_path / "run" / "landscape.csv")
    assert sorted(curves.step.unique()) == [0, 3, 6] and len(curves) == 3 * 10
    step0 = curves[curves.step == 0]
    np.testing.assert_allclose(step0.eta, eta_grid(0.01, 30.0, 10, "log").numpy() * 1e-3)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the preset's threads: the same summation order as in the run
    try:
        x, y = recorder.batch
        expected_ics, walk, g_norm = brute_force_step(
            recorder.before, recorder.after, x, y, [1, 2, 5], step0.eta.tolist()
        )
    finally:
        torch.set_num_threads(threads)
    at0 = metrics[metrics.step == 0].set_index("metric").value
    assert at0["ics/layer1/l2"] == 0.0  # no earlier layer: G' = G
    for i in (2, 5):
        l2, cos = expected_ics[i]
        assert at0[f"ics/layer{i}/l2"] == pytest.approx(l2, rel=1e-4)
        # a float32 cosine near 1 is known to a few ulps (6e-8 each)
        assert 1 - at0[f"ics/layer{i}/cos"] == pytest.approx(1 - cos, rel=1e-3, abs=5e-7)
    losses, diffs = np.array(walk).T
    np.testing.assert_allclose(step0.loss, losses, rtol=1e-5)
    np.testing.assert_allclose(step0.grad_diff, diffs, rtol=1e-4)
    assert at0["landscape/grad_norm"] == pytest.approx(g_norm, rel=1e-5)
    assert at0["landscape/loss_max"] == pytest.approx(losses.max(), rel=1e-5)
    assert at0["landscape/grad_diff_min"] == pytest.approx(diffs.min(), rel=1e-4)


@pytest.mark.parametrize("norm", ["batch", "noisy_batch", "l1"])
def test_all_probes_at_every_step_leave_training_bit_identical(norm, tmp_path) -> None:
    common = dln_overrides(tmp_path, f"norm={norm}", "trainer.max_steps=25")
    probes_on = [
        "probe=[ics,landscape,activations]",
        "probe.ics.layers=[1,3,6]",
        "probe.activations.layers=[1,5]",
        "probe.activations.batch_size=100",
        *(f"probe.{p}.every_n_steps=1" for p in ("ics", "landscape", "activations")),
    ]
    on = run(compose_config([*common, *probes_on]), tmp_path / "on", common)
    rng_on = torch.get_rng_state()
    off = run(compose_config([*common, "probe=none"]), tmp_path / "off", common)
    assert on.status == off.status == "finished"
    # both runs start from the same seed: the probes drew nothing from the global RNG
    assert torch.equal(rng_on, torch.get_rng_state())
    metrics_on = pd.read_csv(tmp_path / "on" / "metrics.csv")
    assert {"ics/layer6/cos", "landscape/beta_eff", "act/layer5/p50"} <= set(metrics_on.metric)
    losses = [
        pd.read_csv(tmp_path / d / "metrics.csv").query("metric == 'train/loss'").value.tolist()
        for d in ("on", "off")
    ]
    assert len(losses[0]) == 25 and losses[0] == losses[1]  # bit for bit
    state_on, state_off = on.module.state_dict(), off.module.state_dict()
    assert state_on.keys() == state_off.keys()
    for key in state_on:
        assert torch.equal(state_on[key], state_off[key]), key


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "probe.ics.layers=[0,9]",
            "layer(s) [0] not a weight layer of the model; valid layers: 1..25",
        ),
        ("probe.ics.layers=[26]", "valid layers: 1..25"),
        ("probe.landscape.spacing=cubic", "spacing='cubic'; valid choices: ['log', 'linear']"),
        ("probe.landscape.method=scan", "method='scan'; valid choices: ['vmap', 'loop']"),
        ("probe.landscape.eta_lo=0", "need 0 < eta_lo <= eta_hi"),
        ("probe.ics.every_n_steps=0", "probe.ics.every_n_steps=0: must be an integer >= 1"),
        ("norm.momentum=null", "method=vmap cannot run with norm.momentum=null"),
    ],
)
def test_bad_probe_settings_fail_at_start_naming_the_valid_choices(override, message, tmp_path):
    from normlab.errors import NormlabError

    norm = ["norm=batch"] if override.startswith("norm.") else []
    overrides = dln_overrides(tmp_path, "probe=[ics,landscape]", *norm, override)
    overrides.remove("model.depth=6")
    with pytest.raises(Exception) as err:
        run(compose_config(overrides), tmp_path / "run", overrides)
    cause = err.value
    while cause is not None and not isinstance(cause, NormlabError):
        cause = cause.__cause__
    assert cause is not None and message in str(cause), str(err.value)
    assert "failed" in (tmp_path / "run" / "summary.json").read_text()


def test_probes_are_instantiated_from_their_configs() -> None:
    from normlab.train import build_probes

    cfg = compose_config(["experiment=santurkar2018/dln_fig5b_lp", "probe=[ics,landscape]"])
    kinds = {type(p) for p in build_probes(cfg)}
    assert kinds == {ICSProbe, LandscapeProbe}


def test_a_parameter_outside_the_numbered_layers_is_refused() -> None:
    from normlab.errors import NormlabError
    from normlab.probes.functional import weight_layers

    model = DLN(depth=3, width=4)
    model.register_parameter("scale", nn.Parameter(torch.ones(1)))  # in no `layer<i>`
    with pytest.raises(NormlabError, match=r"not numbered: \['scale'\]"):
        weight_layers(model)


@pytest.mark.parametrize("norm", ["batch", "noisy_batch"])
def test_probes_on_conv_nets_leave_training_bit_identical(norm, tmp_path) -> None:
    # The VGG experiments reuse the probes on (N, C, H, W) activations and conv kernels.
    common = [
        "data=synthetic_cifar",
        "data.batch_size=32",
        "model=vgg",
        "model.width=0.0625",
        f"norm={norm}",
        "debug=smoke",
        "trainer.max_steps=6",
        "trainer.log_every_n_steps=1",
        "optim.lr=0.05",
        f"paths.runs_dir={tmp_path / 'runs'}",
    ]
    probes_on = [
        "probe=[ics,landscape,activations]",
        "probe.ics.layers=[5,10]",
        "probe.landscape.eta_lo=0.5",
        "probe.landscape.eta_hi=4",
        "probe.landscape.spacing=linear",
        "probe.landscape.num_etas=4",
        "probe.activations.layers=[2,13]",
        "probe.activations.unit.layer=13",
        "probe.activations.batch_size=64",
        *(f"probe.{p}.every_n_steps=1" for p in ("ics", "landscape", "activations")),
    ]
    on = run(compose_config([*common, *probes_on]), tmp_path / "on", common)
    off = run(compose_config([*common, "probe=none"]), tmp_path / "off", common)
    assert on.status == off.status == "finished"
    metrics = pd.read_csv(tmp_path / "on" / "metrics.csv")
    probed = metrics[metrics.metric.isin(["ics/layer10/cos", "landscape/beta_eff"])]
    assert len(probed) == 2 * 6 and np.isfinite(probed.value).all()
    assert set(metrics.query("metric == 'act/layer13/var_drift'").step) == set(range(7))
    losses = [
        pd.read_csv(tmp_path / d / "metrics.csv").query("metric == 'train/loss'").value.tolist()
        for d in ("on", "off")
    ]
    assert len(losses[0]) == 6 and losses[0] == losses[1]
    for key, value in on.module.state_dict().items():
        assert torch.equal(value, off.module.state_dict()[key]), key
