"""`compile.enabled`: the model compiled in place (nn.Module.compile) trains as the eager model does,
keeps its state_dict keys and checkpoints, and bad settings fail at start-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call, grad

from normlab.config import compose_config
from normlab.errors import NormlabError
from normlab.train import compile_model, run


def cpp_compiler_missing() -> str | None:
    """Why inductor cannot compile for the CPU here, or None when it can."""
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        get_cpp_compiler()
    except Exception as err:
        return f"no C++ compiler for inductor on the CPU ($CXX, g++): {err!r}"
    return None


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    # Dynamo's caches (and its list of skipped code) are per process: each test starts clean and
    # leaves nothing behind. One inductor compile worker: the tests keep to <= 2 threads.
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    with torch._inductor.config.patch(compile_threads=1):
        yield
    torch._dynamo.reset()


def mlp_overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "experiment=ioffe2015/fig1_mnist",
        "debug=smoke",
        "data=synthetic",
        "norm=batch",
        "threads=1",
        f"paths.runs_dir={tmp_path / 'runs'}",
        f"paths.data_dir={tmp_path / 'data'}",
        *extra,
    ]


def failure(overrides: list[str], run_dir: Path) -> NormlabError:
    """The NormlabError that `run` raised for `overrides` (found along the cause chain)."""
    with pytest.raises(Exception) as raised:
        run(compose_config(overrides), run_dir, overrides)
    err = raised.value
    while err is not None and not isinstance(err, NormlabError):
        err = err.__cause__
    assert err is not None, repr(raised.value)
    assert '"status": "failed"' in (run_dir / "summary.json").read_text()
    return err


# --- start-up checks (no compilation) --------------------------------------------------------


def test_compile_is_off_by_default() -> None:
    cfg = compose_config([])
    assert cfg.compile.enabled is False and cfg.compile.mode is None
    model = nn.Linear(2, 2)
    compile_model(cfg, model, torch.device("cpu"))
    assert model._compiled_call_impl is None


@pytest.mark.parametrize("mode", [None, "default", "max-autotune-no-cudagraphs"])
def test_valid_modes_compile_in_place(mode: str | None) -> None:
    cfg = OmegaConf.create({"compile": {"enabled": True, "mode": mode}, "probe": {}})
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    keys = list(model.state_dict())
    # torch.compile compiles at the first call, never made here; a CUDA device (not needed to
    # build one) skips the CPU's C++ compiler check
    compile_model(cfg, model, torch.device("cuda"))
    assert model._compiled_call_impl is not None
    assert isinstance(model, nn.Sequential) and list(model.state_dict()) == keys


def test_bad_mode_fails_at_start_naming_the_valid_choices(tmp_path) -> None:
    err = failure(mlp_overrides(tmp_path, "compile.enabled=true", "compile.mode=fastest"), tmp_path)
    assert "compile.mode='fastest'; valid choices: [None, 'default', " in str(err)
    for mode in ("reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
        assert f"'{mode}'" in str(err)


@pytest.mark.parametrize("probes", ["[ics]", "[activations,landscape]"])
def test_compile_with_the_torch_func_probes_is_refused(probes, tmp_path) -> None:
    overrides = mlp_overrides(tmp_path, "compile.enabled=true", f"probe={probes}")
    err = failure(overrides, tmp_path)
    step_probes = "['ics']" if probes == "[ics]" else "['landscape']"
    assert f"compile.enabled=true cannot run with probe={step_probes}" in str(err)
    assert "set compile.enabled=false" in str(err)


def test_compile_on_the_cpu_without_a_cpp_compiler_names_the_fix(tmp_path) -> None:
    import torch._inductor.config

    with torch._inductor.config.patch({"cpp.cxx": ("normlab-no-such-c++",)}):
        err = failure(mlp_overrides(tmp_path, "compile.enabled=true"), tmp_path)
    assert "compile.enabled=true on the CPU needs a C++ compiler" in str(err)
    assert "set compile.enabled=false" in str(err)


def test_torch_func_on_a_module_compiled_in_place_turns_compilation_off() -> None:
    # Why the ICS and landscape probes are refused with compile.enabled: after one functional_call
    # under torch.func.grad (what the probes do), dynamo skips nn.Module.compile's wrapper for good:
    # the module, and any other module compiled in place in the process, runs eager from then on.
    # If a torch release fixes this, this test fails: lift the refusal in compile_model.
    graphs, calls = [], []

    def backend(gm: torch.fx.GraphModule, inputs):
        graphs.append(gm)

        def counted(*args):
            calls.append(1)
            return gm.forward(*args)

        return counted

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    model.compile(backend=backend)
    x, y = torch.randn(16, 4), torch.randn(16, 2)
    model(x)
    model(x)
    assert (len(graphs), len(calls)) == (1, 2)

    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    eager = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    eager.load_state_dict(model.state_dict())

    def loss_of(module: nn.Module):
        return lambda p, b: (functional_call(module, (p, b), (x,)) - y).pow(2).sum()

    g = grad(loss_of(model))(params, buffers)
    g_eager = grad(loss_of(eager))(params, {n: b.clone() for n, b in eager.named_buffers()})
    for name in g:  # the probes' numbers are right: the call ran eager
        torch.testing.assert_close(g[name], g_eager[name], rtol=1e-5, atol=1e-7)
    model(x)
    model(torch.randn(7, 4))
    other = nn.Linear(4, 2)
    other.compile(backend=backend)
    other(x)
    assert (len(graphs), len(calls)) == (1, 2)  # nothing compiled or ran compiled since


# --- compiled training -----------------------------------------------------------------------


@pytest.mark.skipif(cpp_compiler_missing() is not None, reason=str(cpp_compiler_missing()))
def test_compiled_training_matches_eager_and_keeps_checkpoint_keys(tmp_path) -> None:
    # 3 steps, then a validation pass (which writes last.ckpt), the activation probe every step
    # (a plain functional_call on a batch of its own): three graphs, ~20 s on 2 CPU cores.
    from torch._dynamo.utils import counters

    common = mlp_overrides(
        tmp_path,
        "trainer.max_steps=3",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
        "trainer.enable_checkpointing=true",
        "probe.activations.every_n_steps=1",
    )
    eager = run(compose_config(common), tmp_path / "eager", common)
    assert eager.module.model._compiled_call_impl is None
    counters.clear()
    compiled = run(compose_config([*common, "compile.enabled=true"]), tmp_path / "compiled", common)
    assert eager.status == compiled.status == "finished"
    assert compiled.module.model._compiled_call_impl is not None
    assert counters["stats"]["unique_graphs"] >= 3  # training, the probe's batch, evaluation
    assert compiled.summary["config"]["compile"] == {"enabled": True, "mode": None}

    metrics = {
        name: pd.read_csv(tmp_path / name / "metrics.csv").set_index(["step", "metric"]).value
        for name in ("eager", "compiled")
    }
    assert metrics["eager"].index.equals(metrics["compiled"].index)
    losses = metrics["eager"].xs("train/loss", level="metric")
    assert len(losses) == 3 and "act/layer3/p50" in metrics["eager"].index.get_level_values(1)
    probe = metrics["eager"].index.get_level_values("metric").str.startswith("act/")
    # training and test metrics: the same to float32 rounding (inductor fuses and reorders);
    # test/acc counts predictions, so one example on the edge may flip on another CPU
    acc = metrics["eager"].index.get_level_values("metric") == "test/acc"
    pd.testing.assert_series_equal(
        metrics["compiled"][~probe & ~acc], metrics["eager"][~probe & ~acc], rtol=1e-5, atol=1e-6
    )
    pd.testing.assert_series_equal(
        metrics["compiled"][acc], metrics["eager"][acc], rtol=0, atol=2.5e-3
    )
    # the probe's percentiles and moments of ~0-centred activations: absolute differences ~1e-6
    pd.testing.assert_series_equal(
        metrics["compiled"][probe], metrics["eager"][probe], rtol=1e-4, atol=1e-5
    )

    state_eager, state_compiled = eager.module.state_dict(), compiled.module.state_dict()
    assert list(state_compiled) == list(state_eager)
    for key, value in state_eager.items():
        torch.testing.assert_close(state_compiled[key], value, rtol=1e-5, atol=1e-6)
    checkpoints = [
        torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for name in ("eager", "compiled")
    ]
    assert list(checkpoints[1]) == list(checkpoints[0]) == list(state_eager)
