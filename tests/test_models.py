"""The MLP of Ioffe 2015 and its BN layers behave as Alg. 1 (train) and Alg. 2 (inference)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab.models import MLP
from normlab.norms import make_norm


def test_mlp_shape_and_layer_numbering() -> None:
    model = MLP(norm={"name": "batch"})
    assert list(model.layers) == ["layer1", "layer2", "layer3", "layer4"]
    assert [layer.linear.out_features for layer in model.hidden_layers.values()] == [100] * 3
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)


def test_bias_dropped_only_where_bn_follows() -> None:
    bn, plain = MLP(norm={"name": "batch"}), MLP(norm={"name": "none"})
    assert all(layer.linear.bias is None for layer in bn.hidden_layers.values())
    assert all(layer.linear.bias is not None for layer in plain.hidden_layers.values())
    assert bn.layers["layer4"].bias is not None  # the softmax layer has no norm after it


def test_gaussian_init_std() -> None:
    torch.manual_seed(0)
    w = MLP(init_std=0.05).layers["layer1"].linear.weight
    assert w.std().item() == pytest.approx(0.05, rel=0.02)
    assert w.mean().abs().item() < 0.002


def test_bn_train_mode_is_alg1_and_updates_running_stats() -> None:
    torch.manual_seed(0)
    bn = make_norm({"name": "batch", "eps": 1e-5, "momentum": 0.1}, 4)
    nn.init.uniform_(bn.weight, 0.5, 2.0)
    nn.init.uniform_(bn.bias, -1.0, 1.0)
    x = torch.randn(32, 4) * 3 + 2
    y = bn.train()(x)
    mu = x.mean(0)
    var_biased = x.var(0, unbiased=False)  # Alg. 1 normalises with the biased batch variance
    expected = bn.weight * (x - mu) / torch.sqrt(var_biased + 1e-5) + bn.bias
    torch.testing.assert_close(y, expected)
    # Alg. 2's population variance is unbiased: m/(m-1) * var_B, averaged with momentum 0.1.
    torch.testing.assert_close(bn.running_mean, 0.1 * mu)
    torch.testing.assert_close(bn.running_var, 0.9 * torch.ones(4) + 0.1 * x.var(0, unbiased=True))


def test_bn_eval_mode_is_alg2() -> None:
    torch.manual_seed(0)
    bn = make_norm({"name": "batch"}, 3)
    for _ in range(5):
        bn.train()(torch.randn(16, 3) * 2 - 1)
    bn.eval()
    x = torch.randn(7, 3)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    expected = scale * x + (bn.bias - scale * bn.running_mean)
    torch.testing.assert_close(bn(x), expected)
    # Inference is per example: the output for a row does not depend on the rest of the batch.
    torch.testing.assert_close(bn(x[:1]), expected[:1])


def test_conv_bn_uses_one_statistic_per_feature_map() -> None:
    bn = make_norm({"name": "batch"}, 2, dims=2).train()
    x = torch.randn(4, 2, 5, 5)
    y = bn(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        y.var(dim=(0, 2, 3), unbiased=False), torch.ones(2), atol=1e-3, rtol=0
    )


def test_unknown_norm_names_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"unknown norm 'layer'.*\['batch', 'lp', 'noisy_batch', 'none'\]"
    ):
        make_norm({"name": "layer"}, 4)
