"""The theory probe (Santurkar 2018 Thm 4.1, Thm 4.2 on a run's BN layers) against a direct
computation with `.backward()` and full Hessians on deep copies, and its guarantee that training
with it is bit for bit training without it."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.functional import hessian

from normlab.config import compose_config
from normlab.errors import NormlabError
from normlab.models import MLP
from normlab.models.layers import numbered_layers
from normlab.norms import make_norm
from normlab.probes.curvature import fp32_context
from normlab.probes.functional import detached_parameters
from normlab.probes.theory import TheoryProbe, curvature_metrics, theory_metrics
from normlab.train import build_probes, run

F64 = torch.float64


class _ConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: dict) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.norm = make_norm(norm, c_out, dims=2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.norm(self.conv(x)))


class _TinyConvNet(nn.Module):
    """Two conv layers numbered as the papers' models are, then a linear head."""

    def __init__(self, norm: dict) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(
            {"layer1": _ConvLayer(2, 3, norm), "layer2": _ConvLayer(3, 2, norm)}
        )
        self.head = nn.Linear(2 * 3 * 3, 3)

    @property
    def hidden_layers(self) -> dict[int, nn.Module]:
        return numbered_layers(self.layers, _ConvLayer)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers.values():
            x = layer(x)
        return self.head(x.flatten(1))


def mlp() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    model = MLP(6, (5, 4), 3, activation="sigmoid", init_std=0.7, norm={"name": "batch"})
    return model, torch.randn(8, 6)


def conv_net() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(0)
    return _TinyConvNet({"name": "batch"}), torch.randn(3, 2, 3, 3)


def cross_entropy(out: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(out, y, reduction="sum")


def loss_with(model: nn.Module, norm: nn.Module, at: str, value: Tensor, x, y) -> Tensor:
    """The loss of a deep copy with `norm`'s input (or output) replaced by `value` (autograd)."""
    if at == "input":
        handle = norm.register_forward_pre_hook(lambda _, args: (value,))
    else:
        handle = norm.register_forward_hook(lambda _, args, out: value)
    try:
        return cross_entropy(model(x), y)
    finally:
        handle.remove()


def by_hand(model: nn.Module, k: int, x: Tensor, y: Tensor, first: int | None) -> dict[str, float]:
    """The probe's metrics of layer k, on a deep copy: y_in and z captured in the forward, their
    gradients by `.backward()`, Hessians in the layer's input and output in full; the curvature
    over the `first` units (all: None)."""
    model = copy.deepcopy(model).train()
    norm = model.hidden_layers[k].norm
    seen = {}
    handles = [
        norm.register_forward_pre_hook(lambda _, args: seen.__setitem__("y", args[0])),
        norm.register_forward_hook(lambda _, args, out: seen.__setitem__("z", out)),
    ]
    cross_entropy(model(x), y)
    for handle in handles:
        handle.remove()
    y_in, z = seen["y"].detach().requires_grad_(), seen["z"].detach()
    # g = dL/dz and v = dL_hat/dy_in, each by .backward() through the real layers
    z_leaf = z.clone().requires_grad_()
    loss_with(model, norm, "output", z_leaf, x, y).backward()
    loss_with(model, norm, "input", y_in, x, y).backward()
    g, v = z_leaf.grad, y_in.grad
    h_hat = hessian(lambda t: loss_with(model, norm, "input", t, x, y), y_in.detach())
    h = hessian(lambda t: loss_with(model, norm, "output", t, x, y), z)

    c = y_in.shape[1]

    def per_unit(t: Tensor) -> Tensor:  # (N, C, ...) -> (C, m)
        return t.transpose(0, 1).reshape(c, -1)

    def block(hess: Tensor, j: int) -> Tensor:  # unit j's (m, m) block of a Hessian in y or z
        n = y_in.numel()
        index = per_unit(torch.arange(n).view(y_in.shape))[j]
        return hess.reshape(n, n)[index][:, index]

    yu, gu, vu = per_unit(y_in.detach()), per_unit(g), per_unit(v)
    m = yu.shape[1]
    var = yu.var(dim=1, unbiased=False) + norm.eps
    y_hat = (yu - yu.mean(dim=1, keepdim=True)) / var.sqrt()[:, None]
    gamma = norm.weight.detach()
    mean_term = gu.sum(dim=1) ** 2 / m
    align = (gu * y_hat).sum(dim=1)
    grad_sq = gu.pow(2).sum()
    thm41 = {
        f"theory/layer{k}/mean_frac": (mean_term.sum() / grad_sq).item(),
        f"theory/layer{k}/proj_frac": ((align**2 / m).sum() / grad_sq).item(),
        f"theory/layer{k}/removed_frac": ((mean_term + align**2 / m).sum() / grad_sq).item(),
        f"theory/layer{k}/gamma2_over_sigma2": (gamma**2 / var).mean().item(),
        f"theory/layer{k}/grad_ratio": (vu.pow(2).sum() / grad_sq).item(),
    }
    c_curv = c if first is None else first
    quad_hat = torch.stack([vu[j] @ block(h_hat, j) @ vu[j] for j in range(c_curv)])
    quad = torch.stack([vu[j] @ block(h, j) @ vu[j] for j in range(c_curv)])
    gamma, var, align, vu = gamma[:c_curv], var[:c_curv], align[:c_curv], vu[:c_curv]
    v_sq = vu.pow(2).sum()
    return thm41 | {
        f"theory/layer{k}/curv_bn": (quad_hat.sum() / v_sq).item(),
        f"theory/layer{k}/curv_scaled": ((gamma**2 / var * quad).sum() / v_sq).item(),
        f"theory/layer{k}/curv_shift": (
            (gamma / (m * var) * align * vu.pow(2).sum(dim=1)).sum() / v_sq
        ).item(),
    }


@pytest.mark.parametrize("first", [None, 2], ids=["all_units", "first_2_units"])
@pytest.mark.parametrize("build", [mlp, conv_net], ids=["mlp", "conv"])
def test_probe_metrics_equal_backward_and_full_hessians_on_a_copy(build, first) -> None:
    model, x = build()
    model = model.double().train()
    x = x.double()
    y = torch.arange(len(x)) % 3
    with torch.no_grad():  # gamma away from 1, so that gamma's factors are tested
        for norm in (layer.norm for layer in model.hidden_layers.values()):
            norm.weight.copy_(torch.linspace(0.5, 2.0, len(norm.weight)))
            norm.bias.copy_(torch.linspace(-0.3, 0.3, len(norm.bias)))
    state = copy.deepcopy(model.state_dict())
    params = detached_parameters(model)
    got = theory_metrics(model, cross_entropy, params, x, y, [1, 2], curvature_units=first)
    for k in (1, 2):
        expected = by_hand(model, k, x, y, first)
        for key, value in expected.items():
            assert got[key].item() == pytest.approx(value, rel=1e-9, abs=1e-12), key
        # Thm 4.2 on a real layer: the identity, up to the layer's eps = 1e-5
        lhs = expected[f"theory/layer{k}/curv_bn"]
        rhs = expected[f"theory/layer{k}/curv_scaled"] - expected[f"theory/layer{k}/curv_shift"]
        assert lhs == pytest.approx(rhs, rel=1e-3)
    # nothing of the model moved: weights and running statistics
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_without_curvature_only_thm41_is_measured() -> None:
    model, x = mlp()
    y = torch.arange(len(x)) % 3
    got = theory_metrics(model, cross_entropy, detached_parameters(model), x, y, [2], False)
    assert set(got) == {
        f"theory/layer2/{m}"
        for m in ("mean_frac", "proj_frac", "removed_frac", "gamma2_over_sigma2", "grad_ratio")
    }


@pytest.mark.parametrize(
    "norm,layers,message",
    [
        ({"name": "batch"}, [1, 4], "layer(s) [4] not a BN layer of the model; valid layers: 1..3"),
        ({"name": "none"}, [1], "valid layers: none"),
        (
            {"name": "lp", "p": 2},
            [1],
            "noisy BN (norm=noisy_batch) and l_p norms (norm=lp) are not",
        ),
        ({"name": "noisy_batch"}, [1], "noisy BN (norm=noisy_batch) and l_p norms"),
    ],
    ids=["batch_layer_4", "none", "lp", "noisy_batch"],
)
def test_layers_without_a_bn_are_refused_naming_the_valid_ones(norm, layers, message) -> None:
    model = MLP(6, (5, 5, 5), 3, norm=norm)
    with pytest.raises(NormlabError) as err:
        TheoryProbe(layers=layers).setup(None, SimpleNamespace(model=model), "fit")
    assert message in str(err.value)


def test_sync_batchnorm_is_refused_at_fit_start() -> None:
    # Lightning converts BN to SyncBatchNorm (trainer.sync_batchnorm=true) in the strategy's
    # setup, after Callback.setup: setup passes, on_fit_start (after the conversion) refuses.
    model = MLP(6, (5, 5, 5), 3, norm={"name": "batch"})
    probe = TheoryProbe(layers=[1, 2])
    probe.setup(None, SimpleNamespace(model=model), "fit")
    probe.on_fit_start(None, SimpleNamespace(model=model))  # plain BN: fine
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    with pytest.raises(NormlabError, match="SyncBatchNorm .*is not supported"):
        probe.on_fit_start(None, SimpleNamespace(model=synced))


def test_other_buffered_modules_are_refused() -> None:
    model = MLP(6, (5, 5), 3, norm={"name": "batch"})
    model.layers["layer2"].register_buffer("stat", torch.zeros(5))  # a buffer BN does not own
    with pytest.raises(NormlabError, match="needs norm=batch throughout"):
        TheoryProbe(layers=[1]).setup(None, SimpleNamespace(model=model), "fit")


def test_probe_is_instantiated_from_its_config() -> None:
    cfg = compose_config(["experiment=ioffe2015/fig1_mnist", "norm=batch", "probe=theory"])
    (probe,) = build_probes(cfg)
    assert isinstance(probe, TheoryProbe)
    settings = (probe.layers, probe.every_n_steps, probe.curvature, probe.curvature_units)
    assert settings == ([1, 2, 3], 100, True, None)


# --- in training -------------------------------------------------------------------------------


def neutral_runs(tmp_path, common: list[str], probe: list[str]) -> pd.DataFrame:
    """Runs `common` with and without `probe`; asserts they trained bit for bit alike and left
    the global RNG where the other left it. Returns the probed run's metrics."""
    on = run(compose_config([*common, *probe]), tmp_path / "on", common)
    rng_on = torch.get_rng_state()
    off = run(compose_config([*common, "probe=none"]), tmp_path / "off", common)
    assert on.status == off.status == "finished"
    assert torch.equal(rng_on, torch.get_rng_state())  # the probe drew nothing
    losses = [
        pd.read_csv(tmp_path / d / "metrics.csv").query("metric == 'train/loss'").value.tolist()
        for d in ("on", "off")
    ]
    assert losses[0] and losses[0] == losses[1]
    state_on, state_off = on.module.state_dict(), off.module.state_dict()
    assert state_on.keys() == state_off.keys()
    for key in state_on:
        assert torch.equal(state_on[key], state_off[key]), key
    return pd.read_csv(tmp_path / "on" / "metrics.csv")


def test_theory_probe_at_every_step_leaves_mlp_training_bit_identical(
    tiny_overrides, tmp_path
) -> None:
    common = [
        *tiny_overrides,
        "norm=batch",
        "trainer.max_steps=8",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=4",
    ]
    probe = ["probe=[activations,theory]", "probe.theory.every_n_steps=1"]
    metrics = neutral_runs(tmp_path, common, probe)
    probed = metrics[metrics.metric.str.startswith("theory/")]
    assert set(probed.step) == set(range(8))
    assert {f"theory/layer{k}/curv_bn" for k in (1, 2, 3)} <= set(probed.metric)
    removed = probed[probed.metric.str.endswith("/removed_frac")].value
    assert removed.between(0, 1).all()


def test_under_bf16_thm42_is_measured_in_fp32(tiny_overrides, tmp_path) -> None:
    # Under bf16-mixed the step runs under autocast; Thm 4.2's Hessian-vector products are taken
    # with autocast off and the same v on both sides, so the identity curv_bn = curv_scaled -
    # curv_shift holds to the layer's eps (1e-5) and fp32 round-off, not to bf16's 3 digits.
    common = [
        *tiny_overrides,
        "norm=batch",
        "trainer.precision=bf16-mixed",
        "trainer.max_steps=4",
        "trainer.log_every_n_steps=1",
        "trainer.val_check_interval=4",
        "probe=theory",
        "probe.theory.every_n_steps=1",
    ]
    assert run(compose_config(common), tmp_path / "bf16", common).status == "finished"
    metrics = pd.read_csv(tmp_path / "bf16" / "metrics.csv")
    wide = metrics[metrics.metric.str.startswith("theory/")].pivot_table(
        index="step", columns="metric", values="value"
    )
    assert list(wide.index) == [0, 1, 2, 3]
    for k in (1, 2, 3):
        bn = wide[f"theory/layer{k}/curv_bn"]
        rhs = wide[f"theory/layer{k}/curv_scaled"] - wide[f"theory/layer{k}/curv_shift"]
        size = (
            wide[f"theory/layer{k}/curv_scaled"].abs() + wide[f"theory/layer{k}/curv_shift"].abs()
        )
        assert ((bn - rhs).abs() <= 1e-3 * size).all(), (k, (bn - rhs).abs() / size)


def test_curvature_under_autocast_equals_float64() -> None:
    # The probe's path: the step's autocast (bf16) around, fp32_context inside. Thm 4.2's terms
    # then agree with the float64 computation to fp32's digits (in bf16 they were 1e-3-2e-2 off).
    model, x = mlp()
    y = torch.arange(len(x)) % 3
    params = detached_parameters(model)
    with torch.autocast("cpu", dtype=torch.bfloat16), fp32_context(model, replay_last=True):
        got = curvature_metrics(model, cross_entropy, params, x, y, [1, 2])
    exact = copy.deepcopy(model).double()
    want = curvature_metrics(
        exact, cross_entropy, detached_parameters(exact), x.double(), y, [1, 2]
    )
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].item() == pytest.approx(want[key].item(), rel=1e-4), key


def test_theory_probe_on_vgg_leaves_training_bit_identical(tmp_path) -> None:
    common = [
        "data=synthetic_cifar",
        "data.batch_size=16",
        "model=vgg",
        "model.width=0.0625",
        "norm=batch",
        "debug=smoke",
        "trainer.max_steps=3",
        "trainer.log_every_n_steps=1",
        "optim.lr=0.05",
        f"paths.runs_dir={tmp_path / 'runs'}",
    ]
    probe = [
        "probe=theory",
        "probe.theory.layers=[2,13]",
        "probe.theory.every_n_steps=1",
        "probe.theory.chunk_size=4",
        "probe.theory.curvature_units=6",
    ]
    metrics = neutral_runs(tmp_path, common, probe)
    probed = metrics[metrics.metric.str.startswith("theory/layer13/")]
    assert set(probed.step) == {0, 1, 2} and len(set(probed.metric)) == 8
