"""The VGG of Santurkar 2018 (CIFAR-10): plans, numbering, norms, init, channels_last."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from normlab.config import CONF_DIR
from normlab.models import VGG
from normlab.models.vgg import ConvLayer
from normlab.norms import LpNorm, NoisyBatchNorm
from normlab.probes.activations import layer_width
from normlab.probes.functional import detached_parameters, weight_layers
from normlab.probes.ics import ics_gradients

NORMS = {
    "none": {"name": "none"},
    "batch": {"name": "batch"},
    "noisy_batch": {"name": "noisy_batch"},
    "lp": {"name": "lp", "p": 1},
}
NORM_TYPES = {
    "none": nn.Identity,
    "batch": nn.BatchNorm2d,
    "noisy_batch": NoisyBatchNorm,
    "lp": LpNorm,
}
# Conv channel plans of the VGG configurations A, B, D, E, pools left out.
CONV_CHANNELS = {
    11: [64, 128, 256, 256, 512, 512, 512, 512],
    13: [64, 64, 128, 128, 256, 256, 512, 512, 512, 512],
    16: [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    19: [64, 64, 128, 128, 256, 256, 256, 256, *[512] * 8],
}
SMALL = 0.125  # channels 8..64


def expected_parameters(depth: int, conv_bias: bool, norm_affine: bool, classes: int = 10) -> int:
    """By hand: 3x3 kernels (+ bias) and gamma/beta per conv layer, then 512 -> classes."""
    total, c_in = 0, 3
    for c in CONV_CHANNELS[depth]:
        total += 9 * c_in * c + (c if conv_bias else 0) + (2 * c if norm_affine else 0)
        c_in = c
    return total + c_in * classes + classes


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_parameter_counts_at_width_1(depth: int) -> None:
    assert n_params(VGG(depth)) == expected_parameters(depth, conv_bias=True, norm_affine=False)
    # With BN the conv bias is dropped (beta replaces it); noisy BN and l_p have gamma/beta too.
    for name in ("batch", "noisy_batch", "lp"):
        model = VGG(depth, norm=NORMS[name])
        assert n_params(model) == expected_parameters(depth, conv_bias=False, norm_affine=True)


def test_formula_matches_the_common_cifar_vgg_counts() -> None:
    # The widely used CIFAR VGGs (conv + bias + BN + ReLU, one 512 -> 10 linear layer) have
    # 9,231,114 / 9,416,010 / 14,728,266 / 20,040,522 parameters: the formula reproduces them.
    known = {11: 9_231_114, 13: 9_416_010, 16: 14_728_266, 19: 20_040_522}
    for depth, count in known.items():
        assert expected_parameters(depth, conv_bias=True, norm_affine=True) == count


@pytest.mark.parametrize("depth", [11, 13, 16, 19])
def test_layer_numbering_convs_then_classifier(depth: int) -> None:
    model = VGG(depth, width=SMALL, norm=NORMS["batch"])
    n_conv = len(CONV_CHANNELS[depth])
    assert n_conv == depth - 3
    assert list(model.layers) == [f"layer{i}" for i in range(1, n_conv + 2)]
    assert sorted(model.hidden_layers) == list(range(1, n_conv + 1))
    for i in range(1, n_conv + 1):
        assert isinstance(model.layers[f"layer{i}"], ConvLayer)
    classifier = model.layers[f"layer{n_conv + 1}"]
    assert isinstance(classifier, nn.Linear)
    assert (classifier.in_features, classifier.out_features) == (64, 10)
    assert model.out_features == 10
    widths = [layer_width(layer) for layer in model.hidden_layers.values()]
    assert widths == [max(1, round(c * SMALL)) for c in CONV_CHANNELS[depth]]


def test_pools_follow_the_plan() -> None:
    model = VGG(16, width=SMALL)
    pooled = [i for i, layer in model.hidden_layers.items() if isinstance(layer.pool, nn.MaxPool2d)]
    assert pooled == [2, 4, 7, 10, 13]


@pytest.mark.parametrize("name", list(NORMS))
def test_hidden_layers_have_the_norm(name: str) -> None:
    model = VGG(16, width=SMALL, norm=NORMS[name])
    hidden = model.hidden_layers
    assert len(hidden) == 13
    for layer in hidden.values():
        assert type(layer.norm) is NORM_TYPES[name]
    # Probes find every layer's width, with or without a norm that knows it.
    assert layer_width(hidden[13]) == 64


@pytest.mark.parametrize("name", list(NORMS))
def test_bias_dropped_iff_the_norm_uses_batch_statistics(name: str) -> None:
    model = VGG(11, width=SMALL, norm=NORMS[name])
    has_bias = [layer.conv.bias is not None for layer in model.hidden_layers.values()]
    assert has_bias == [name == "none"] * 8
    assert model.layers["layer9"].bias is not None  # the classifier has no norm after it


@pytest.mark.parametrize("name", list(NORMS))
def test_every_parameter_is_numbered(name: str) -> None:
    model = VGG(16, width=SMALL, norm=NORMS[name])
    by_layer = weight_layers(model)
    assert list(by_layer) == list(range(1, 15))
    assert sum(len(names) for names in by_layer.values()) == len(list(model.parameters()))
    params = dict(model.named_parameters())
    # ICS takes each layer's >= 2-D parameters as its weight: exactly the conv kernel.
    for i in range(1, 14):
        kernels = [n for n in by_layer[i] if params[n].dim() >= 2]
        assert kernels == [f"layers.layer{i}.conv.weight"]
    assert by_layer[14] == ["layers.layer14.weight", "layers.layer14.bias"]


@pytest.mark.parametrize("name", list(NORMS))
def test_forward_backward_small(name: str) -> None:
    torch.manual_seed(0)
    model = VGG(16, width=SMALL, norm=NORMS[name])
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    out = model(x)
    assert out.shape == (8, 10)
    nn.functional.cross_entropy(out, y).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert model.eval()(x).shape == (8, 10)


@pytest.mark.parametrize("name", ["none", "batch"])
def test_probe_hook_sees_the_norm_output_before_the_relu(name: str) -> None:
    torch.manual_seed(0)
    model = VGG(11, width=SMALL, norm=NORMS[name])
    captured = []
    model.hidden_layers[3].norm.register_forward_hook(
        lambda module, args, out: captured.append(out.detach())
    )
    model(torch.randn(4, 3, 32, 32))
    assert (captured[0] < 0).any()  # a ReLU applied in place would have zeroed these


@pytest.mark.parametrize("name", ["none", "batch", "noisy_batch", "lp"])
def test_channels_last_forward_matches_the_default(name: str) -> None:
    torch.manual_seed(0)
    default = VGG(11, width=SMALL, norm=NORMS[name])
    fast = VGG(11, width=SMALL, norm=NORMS[name], channels_last=True)
    fast.load_state_dict(default.state_dict())
    assert fast.layers["layer1"].conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(6, 3, 32, 32)
    for train in (True, False):
        default.train(train)
        fast.train(train)
        torch.testing.assert_close(fast(x), default(x), atol=1e-5, rtol=1e-4)


def test_width_rounds_and_keeps_at_least_one_channel() -> None:
    model = VGG(11, width=0.001)
    assert [layer_width(layer) for layer in model.hidden_layers.values()] == [1] * 8
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("depth", [0, 12, 18, 20])
def test_bad_depth_names_the_valid_depths(depth: int) -> None:
    with pytest.raises(
        ValueError, match=rf"model.depth must be one of \[11, 13, 16, 19\], got {depth}"
    ):
        VGG(depth)


def test_bad_width_and_input_size() -> None:
    with pytest.raises(ValueError, match="model.width must be > 0"):
        VGG(11, width=0)
    with pytest.raises(ValueError, match="expects 32x32 inputs"):
        VGG(11, width=SMALL)(torch.randn(2, 3, 64, 64))


def test_glorot_init() -> None:
    torch.manual_seed(0)
    model = VGG(16, norm=NORMS["none"])
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            fan_out, fan_in = module.weight.shape[:2]
            positions = module.weight[0, 0].numel()  # 9 for a 3x3 kernel, 1 for a linear layer
            expected = math.sqrt(2 / ((fan_in + fan_out) * positions))
            assert module.weight.std().item() == pytest.approx(expected, rel=0.05)
            assert module.weight.mean().abs().item() < 0.1 * expected
            assert torch.count_nonzero(module.bias) == 0


def test_ics_gradients_take_the_conv_kernels() -> None:
    torch.manual_seed(0)
    model = VGG(16, width=SMALL, norm=NORMS["batch"])
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    before = detached_parameters(model)
    after = {n: t + 0.01 * torch.randn_like(t) for n, t in before.items()}
    grads = ics_gradients(model, nn.functional.cross_entropy, x, y, before, after, [5, 10])
    for i in (5, 10):
        g, g_prime = grads[i]
        assert g.numel() == model.layers[f"layer{i}"].conv.weight.numel() == g_prime.numel()
        assert not torch.equal(g, g_prime)  # earlier layers moved


def test_config_composes_and_feeds_the_classifier_module() -> None:
    overrides = ["model=vgg", "norm=batch", "model.width=0.125", "model.num_classes=7"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
        bad = compose("train", overrides=["model=vgg", "model.depth=12"])
    assert cfg.model.depth == 16 and cfg.model.channels_last is False
    assert cfg.module.num_classes == 7  # module=classifier reads model.out_features
    model = instantiate(cfg.model, norm=OmegaConf.to_container(cfg.norm, resolve=True))
    assert isinstance(model, VGG) and model.out_features == 7
    assert isinstance(model.hidden_layers[13].norm, nn.BatchNorm2d)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(Exception, match=r"one of \[11, 13, 16, 19\], got 12"):
        instantiate(bad.model)
    with pytest.raises(ValueError, match="disagrees with model.num_classes"):
        VGG(11, num_classes=10, out_features=7)
