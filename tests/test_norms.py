"""Santurkar 2018's norms: noisy BN (App. A.2.1, Alg. 1) and l_p normalisation (Sec. 3.3)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call, grad, vmap

from normlab.errors import NormlabError
from normlab.norms import (
    LpNorm,
    NoisyBatchNorm,
    frozen_noise,
    make_norm,
    seed_noise,
    uses_batch_statistics,
)

N_MU, N_SIGMA, R_MU, R_SIGMA = 0.5, 1.25, 0.1, 0.1

# ---------------------------------------------------------------------------------------------
# noisy BN


def noisy(num_features: int = 3, dims: int = 1, **options: object) -> NoisyBatchNorm:
    module = make_norm({"name": "noisy_batch", **options}, num_features, dims)
    assert isinstance(module, NoisyBatchNorm)
    return module


def test_unit_noise_moments_match_alg1() -> None:
    module = noisy(seed=1)
    draws = [module.unit_noise(4000, "cpu", step) for step in range(10)]
    mu = torch.cat([d[0] for d in draws])
    sigma = torch.cat([d[1] for d in draws])
    # mu_j ~ U(-0.5, 0.5): mean 0, variance n_mu^2 / 3, range reaching +-n_mu and no further.
    assert mu.mean().abs().item() < 0.01
    assert mu.var().item() == pytest.approx(N_MU**2 / 3, rel=0.05)
    assert -N_MU <= mu.min().item() < -0.99 * N_MU
    assert 0.99 * N_MU < mu.max().item() <= N_MU
    # sigma_j ~ U(1, 1.25): mean 1.125, variance (n_sigma - 1)^2 / 12, range [1, n_sigma].
    assert sigma.mean().item() == pytest.approx((1 + N_SIGMA) / 2, abs=0.005)
    assert sigma.var().item() == pytest.approx((N_SIGMA - 1) ** 2 / 12, rel=0.05)
    assert 1.0 <= sigma.min().item() < 1.0 + 0.01 * (N_SIGMA - 1)
    assert N_SIGMA - 0.01 * (N_SIGMA - 1) < sigma.max().item() <= N_SIGMA
    # Fresh every step: two steps draw different unit noise.
    assert not torch.equal(draws[0][0], draws[1][0])


def test_element_noise_moments_match_alg1() -> None:
    module = noisy(seed=2)
    shape = (400, 50)
    m_dev, s_dev = [], []
    for step in range(5):
        m, s = module.draw_noise(shape, "cpu", step)
        mu, sigma = module.unit_noise(shape[1], "cpu", step)  # the same draw as inside draw_noise
        m_dev.append(m - mu)
        s_dev.append(s - sigma)
    m_dev, s_dev = torch.cat(m_dev), torch.cat(s_dev)
    # m_ij - mu_j ~ U(-r_mu, r_mu): mean 0, variance r_mu^2 / 3, half-width r_mu.
    assert m_dev.mean().abs().item() < 0.002
    assert m_dev.var().item() == pytest.approx(R_MU**2 / 3, rel=0.03)
    assert m_dev.abs().max().item() <= R_MU + 1e-6
    assert m_dev.abs().max().item() > 0.99 * R_MU
    # s_ij - sigma_j ~ N(0, r_sigma): r_sigma is a standard deviation; Gaussian tails (kurtosis 3).
    assert s_dev.mean().abs().item() < 0.002
    assert s_dev.std().item() == pytest.approx(R_SIGMA, rel=0.03)
    kurtosis = ((s_dev / s_dev.std()) ** 4).mean().item()
    assert kurtosis == pytest.approx(3.0, abs=0.15)


def test_constants_come_from_the_config() -> None:
    module = noisy(n_mu=2.0, n_sigma=3.0, r_mu=0.5, r_sigma=0.25)
    mu, sigma = module.unit_noise(5000, "cpu", 0)
    assert mu.abs().max().item() == pytest.approx(2.0, rel=0.01)
    assert sigma.min().item() >= 1.0 and sigma.max().item() == pytest.approx(3.0, rel=0.01)
    m, s = module.draw_noise((200, 100), "cpu", 0)
    mu, sigma = module.unit_noise(100, "cpu", 0)
    assert (m - mu).abs().max().item() == pytest.approx(0.5, rel=0.01)
    assert (s - sigma).std().item() == pytest.approx(0.25, rel=0.05)
    with pytest.raises(NormlabError, match="n_sigma must be >= 1"):
        noisy(n_sigma=0.9)


def test_training_forward_is_bn_then_noise_then_affine() -> None:
    torch.manual_seed(0)
    module = noisy(4, seed=3)
    nn.init.uniform_(module.weight, 0.5, 2.0)
    nn.init.uniform_(module.bias, -1.0, 1.0)
    x = torch.randn(16, 4) * 3 + 2
    y = module.train()(x)
    normalised = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    m, s = module.draw_noise(x.shape, "cpu", 0)
    torch.testing.assert_close(y, module.weight * (s * normalised + m) + module.bias)
    assert module.noise_step == 1


def test_conv_noise_is_per_element_with_per_channel_unit_noise() -> None:
    module = noisy(3, dims=2, seed=4)
    x = torch.randn(6, 3, 5, 7)
    y = module.train()(x)
    assert y.shape == x.shape
    m, s = module.draw_noise(x.shape, "cpu", 0)
    mu, sigma = module.unit_noise(3, "cpu", 0)
    normalised = F.batch_norm(x, None, None, training=True, eps=1e-5)
    torch.testing.assert_close(y, s * normalised + m)
    # Every spatial position of every sample gets its own m and s, around its channel's mu, sigma.
    assert (m - mu.view(1, 3, 1, 1)).abs().max().item() <= R_MU + 1e-6
    for j in range(3):
        assert m[:, j].unique().numel() == 6 * 5 * 7
        assert s[:, j].unique().numel() == 6 * 5 * 7
        assert m[:, j].mean().item() == pytest.approx(mu[j].item(), abs=0.03)
        assert s[:, j].mean().item() == pytest.approx(sigma[j].item(), abs=0.05)


def test_noise_off_in_eval_and_running_stats_as_bn() -> None:
    torch.manual_seed(0)
    module, plain = noisy(3, seed=5), nn.BatchNorm1d(3)
    nn.init.uniform_(module.weight, 0.5, 2.0)
    nn.init.uniform_(module.bias, -1.0, 1.0)
    for _ in range(4):
        x = torch.randn(16, 3) * 2 - 1
        module.train()(x)
        plain.train()(x)
    # The noise acts after the normalisation: BN's running statistics are those of plain BN.
    torch.testing.assert_close(module.bn.running_mean, plain.running_mean)
    torch.testing.assert_close(module.bn.running_var, plain.running_var)
    module.eval()
    x = torch.randn(7, 3)
    expected = F.batch_norm(
        x, plain.running_mean, plain.running_var, module.weight, module.bias, False, 0.0, 1e-5
    )
    step = module.noise_step
    torch.testing.assert_close(module(x), expected)
    torch.testing.assert_close(module(x[:1]), expected[:1])
    assert module.noise_step == step  # eval draws nothing


def test_training_forward_leaves_the_global_rng_alone() -> None:
    module = noisy(3, dims=2, seed=6).train()
    x = torch.randn(4, 3, 2, 2)
    state = torch.get_rng_state()
    module(x)
    with module.frozen_noise():
        module(x)
    assert torch.equal(torch.get_rng_state(), state)


def test_same_seed_same_noise_different_seed_rank_stream_differ() -> None:
    x = torch.randn(8, 5)
    a, b, c = noisy(5, seed=7).train(), noisy(5, seed=7).train(), noisy(5, seed=8).train()
    ya, yb, yc = a(x), b(x), c(x)
    assert torch.equal(ya, yb)
    assert not torch.allclose(ya, yc)
    assert torch.equal(a(x), b(x))  # and again at the next step, which differs from the first
    assert not torch.allclose(ya, a(x))
    # A DDP rank keeps the per-unit noise (one draw per step for the global batch) and gets its
    # own per-element noise; another stream (layer) gets its own per-unit noise too.
    ranked = noisy(5, seed=7)
    ranked.reseed(7, rank=1)
    assert torch.equal(ranked.unit_noise(5, "cpu", 0)[0], a.unit_noise(5, "cpu", 0)[0])
    assert not torch.allclose(
        ranked.draw_noise((8, 5), "cpu", 0)[0], a.draw_noise((8, 5), "cpu", 0)[0]
    )
    ranked.reseed(7, rank=0, stream=1)
    assert not torch.allclose(ranked.unit_noise(5, "cpu", 0)[0], a.unit_noise(5, "cpu", 0)[0])


def test_seed_noise_gives_layers_their_own_streams() -> None:
    model = nn.Sequential(noisy(4, seed=0), nn.Linear(4, 4), noisy(4, seed=0))
    first, second = model[0], model[2]
    assert torch.equal(first.unit_noise(4, "cpu", 0)[0], second.unit_noise(4, "cpu", 0)[0])
    seed_noise(model, seed=9, rank=1)
    assert (first.seed, first.rank, first.stream) == (9, 1, 0)
    assert (second.seed, second.rank, second.stream) == (9, 1, 1)
    assert not torch.allclose(first.unit_noise(4, "cpu", 0)[0], second.unit_noise(4, "cpu", 0)[0])


def test_frozen_noise_does_not_shift_the_training_noise() -> None:
    x = torch.randn(8, 5)
    probed, reference = noisy(5, seed=10).train(), noisy(5, seed=10).train()
    with probed.frozen_noise():  # a probe before the step sees the step's (next) noise, twice
        inside = [probed(x), probed(x)]
    assert torch.equal(inside[0], inside[1])
    assert probed.noise_step == 0
    first = reference(x)
    torch.testing.assert_close(inside[0], first, rtol=0, atol=0)
    assert torch.equal(probed(x), first)  # the training forward after the probe is unchanged
    # After the step, replay_last re-draws the noise of the step that just ran.
    with probed.frozen_noise(replay_last=True):
        assert torch.equal(probed(x), first)
    assert torch.equal(probed(x), reference(x))
    assert probed.noise_step == reference.noise_step == 2


def test_model_level_frozen_noise_and_copies() -> None:
    model = nn.Sequential(nn.Linear(3, 4), noisy(4, seed=11), nn.Linear(4, 4), noisy(4, seed=11))
    seed_noise(model, 11)
    x = torch.randn(8, 3)
    twin = copy.deepcopy(model)  # a deep copy draws the noise the original would
    with frozen_noise(model):
        probe = model(x)
    assert torch.equal(model(x), probe)
    assert torch.equal(twin(x), probe)
    with (
        pytest.raises(RuntimeError, match="no training forward"),
        frozen_noise(noisy(4).train(), replay_last=True),
    ):
        pass


def test_frozen_noise_under_torch_func_as_probes_use_it() -> None:
    # A probe's functional calls (cloned buffers, vmap over a grid with randomness="same") inside
    # frozen_noise all see the same noise as a plain loop, and the live module's noise is untouched.
    module = noisy(4, seed=13).train()
    x = torch.randn(8, 4)
    params = {k: v.detach().clone() for k, v in module.named_parameters()}
    buffers = dict(module.named_buffers())

    def loss(weight: torch.Tensor, bufs: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(module, {**params, "weight": weight, **bufs}, (x,)).square().sum()

    grid = torch.stack([params["weight"] * (1 + 0.1 * k) for k in range(3)])
    with module.frozen_noise():
        batched = {k: v.expand(3, *v.shape).clone() for k, v in buffers.items()}
        swept = vmap(loss, randomness="same")(grid, batched)
        looped = torch.stack([loss(w, {k: v.clone() for k, v in buffers.items()}) for w in grid])
        gradient = grad(loss)(grid[0], {k: v.clone() for k, v in buffers.items()})
    torch.testing.assert_close(swept, looped)
    assert gradient.shape == (4,)
    assert module.noise_step == 0 and int(module.bn.num_batches_tracked) == 0


def test_noise_step_resumes_from_the_state_dict() -> None:
    x = torch.randn(8, 5)
    run = noisy(5, seed=12).train()
    run(x)
    state = run.state_dict()
    assert int(state["_extra_state"]) == 1
    resumed = noisy(5, seed=12).train()
    resumed.load_state_dict(state)
    assert torch.equal(resumed(x), run(x))


# ---------------------------------------------------------------------------------------------
# l_p normalisation


def lp_by_hand(y: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """Santurkar 2018 Sec. 3.3 written out, one unit at a time: y_hat = (y - mean) / (s_j + eps), s_j
    the batch l_p average of y before centring (max |y| for p = inf)."""
    out = torch.empty_like(y)
    for j in range(y.shape[1]):
        values = y[:, j].reshape(-1)  # conv: batch and spatial positions
        m = values.numel()
        mean = sum(values.tolist()) / m
        if p == math.inf:
            s = max(abs(v) for v in values.tolist())
        else:
            s = (sum(abs(v) ** p for v in values.tolist()) / m) ** (1 / p)
        out[:, j] = (y[:, j] - mean) / (s + eps)
    return out


@pytest.mark.parametrize("p", [1, 2, math.inf])
@pytest.mark.parametrize("shape", [(16, 4), (5, 3, 4, 6)])
def test_lp_matches_the_written_out_definition(p: float, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    y = (torch.randn(shape) * 2 + 1.5).double()  # off-centre: s_j before centring matters
    module = make_norm(
        {"name": "lp", "p": p, "eps": 1e-5}, shape[1], dims=1 if len(shape) == 2 else 2
    )
    module = module.double().train()
    expected = lp_by_hand(y, p, 1e-5)
    torch.testing.assert_close(module(y), expected, rtol=1e-10, atol=1e-10)
    # Zero batch mean per channel (before affine), but not unit l_p norm in general.
    axes = [0, *range(2, y.dim())]
    out = module(y)
    torch.testing.assert_close(
        out.mean(dim=axes), torch.zeros(shape[1]).double(), atol=1e-10, rtol=0
    )
    centred_first = lp_by_hand(y - y.mean(dim=axes, keepdim=True), p, 1e-5)
    assert not torch.allclose(out, centred_first, atol=1e-3)
    # gamma/beta act per channel after the normalisation.
    nn.init.uniform_(module.weight, 0.5, 2.0)
    nn.init.uniform_(module.bias, -1.0, 1.0)
    view = (1, -1) + (1,) * (y.dim() - 2)
    torch.testing.assert_close(
        module(y), expected * module.weight.view(view) + module.bias.view(view)
    )


@pytest.mark.parametrize("p", [3, "two", 1.5, 0, "3", True, None])
def test_lp_rejects_p_outside_1_2_inf(p: object) -> None:
    with pytest.raises(
        NormlabError, match=r"norm\.p must be one of \[1, 2, inf\], got " + repr(p)[:3]
    ):
        make_norm({"name": "lp", "p": p}, 4)


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (1, 1.0),
        (2, 2.0),
        (2.0, 2.0),
        ("1", 1.0),
        ("2", 2.0),
        ("inf", math.inf),
        (math.inf, math.inf),
    ],
)
def test_lp_accepts_p_as_yaml_and_command_line_give_it(given: object, parsed: float) -> None:
    module = make_norm({"name": "lp", "p": given}, 3, dims=2)
    assert isinstance(module, LpNorm) and module.p == parsed
    assert module.train()(torch.randn(4, 3, 2, 2)).shape == (4, 3, 2, 2)


def test_lp_eval_uses_running_statistics_per_example() -> None:
    torch.manual_seed(0)
    module = make_norm({"name": "lp", "p": 1, "momentum": 0.1}, 3)
    nn.init.uniform_(module.weight, 0.5, 2.0)
    nn.init.uniform_(module.bias, -1.0, 1.0)
    running_mean, running_scale = torch.zeros(3), torch.ones(3)
    for _ in range(3):
        x = torch.randn(32, 3) * 2 + 1
        module.train()(x)
        running_mean = 0.9 * running_mean + 0.1 * x.mean(0)
        running_scale = 0.9 * running_scale + 0.1 * x.abs().mean(0)
    torch.testing.assert_close(module.running_mean, running_mean)
    torch.testing.assert_close(module.running_scale, running_scale)
    module.eval()
    x = torch.randn(7, 3)
    expected = (x - running_mean) / (running_scale + 1e-5) * module.weight + module.bias
    torch.testing.assert_close(module(x), expected)
    torch.testing.assert_close(module(x[:1]), expected[:1])  # a row does not see the others


# ---------------------------------------------------------------------------------------------
# factory and configs


@pytest.mark.parametrize("name", ["noisy_batch", "lp"])
@pytest.mark.parametrize("shape", [(8, 4), (8, 4, 3, 3)])
def test_factory_builds_both_for_both_shapes(name: str, shape: tuple[int, ...]) -> None:
    module = make_norm({"name": name}, 4, dims=1 if len(shape) == 2 else 2).train()
    x = torch.randn(shape, requires_grad=True)
    y = module(x)
    y.square().sum().backward()
    assert y.shape == x.shape and x.grad is not None and module.weight.grad is not None
    assert uses_batch_statistics({"name": name})


def test_configs_compose_into_working_norms() -> None:
    from normlab.config import compose_config

    cfg = compose_config(["norm=lp", "norm.p=inf"])  # a float on the command line
    assert cfg.norm.p == math.inf
    assert make_norm(OmegaConf.to_container(cfg.norm), 4).p == math.inf
    yaml_inf = OmegaConf.merge(cfg.norm, OmegaConf.create("p: inf"))  # a string in YAML
    assert yaml_inf.p == "inf" and make_norm(OmegaConf.to_container(yaml_inf), 4).p == math.inf
    assert compose_config(["norm=lp"]).norm.p == 2
    cfg = compose_config(["norm=noisy_batch", "seed=5"])
    module = make_norm(OmegaConf.to_container(cfg.norm), 4, dims=2)
    assert isinstance(module, NoisyBatchNorm) and module.seed == 5
    assert (module.n_mu, module.n_sigma, module.r_mu, module.r_sigma) == (0.5, 1.25, 0.1, 0.1)
