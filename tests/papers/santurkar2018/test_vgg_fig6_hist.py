"""Santurkar 2018 Fig. 6 (`santurkar2018/vgg_fig6_hist`, the histogram panel kind
`normlab.report.hist.Histograms`) on the committed smoke sweep of `vgg_suite`
(`tests/golden/runs/`, real tiny runs, read as they are): a readable grid of one panel per norm, a
y range that shows the later histograms when the first one is a spike (the plotted data
unchanged), and the refusal when a run has no histogram of the layer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from normlab.papers.santurkar2018.protocol import ALL_NORMS, VGG_HIST_LAYER
from normlab.report.hist import ZOOM_ABOVE
from normlab.report.registry import FIGURES
from normlab.report.runs import LABELS

REPO = Path(__file__).resolve().parents[3]
SMOKE = REPO / "tests" / "golden" / "runs" / "santurkar2018_vgg_suite"
SPEC = FIGURES["santurkar2018/vgg_fig6_hist"]
STANDARD = "+vgg_point=none_lr1e-1,seed=0"


def _copy(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    for run in SMOKE.glob("+vgg_point=*_lr1e-1,seed=*"):
        shutil.copytree(run, sweep / run.name)
    return sweep


def _spike(sweep: Path, factor: float = 20.0) -> None:
    """The standard net's (seed 0) first histogram of the layer squeezed `factor` times narrower
    around 0: the narrow spike it starts as at paper scale."""
    path = sweep / STANDARD / "act_hist.csv"
    hist = pd.read_csv(path)
    first = (hist["step"] == hist["step"].min()) & (hist["layer"] == VGG_HIST_LAYER)
    hist.loc[first, ["bin_lo", "bin_hi"]] /= factor
    hist.to_csv(path, index=False)


def _axes(fig) -> dict[str, object]:
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def test_one_readable_panel_per_norm_in_a_grid() -> None:
    fig = SPEC.draw(SPEC.load([SMOKE]))
    axes = _axes(fig)
    assert sorted(axes) == sorted(
        f"{LABELS[v]}, layer #{VGG_HIST_LAYER}, seed 0" for v in ALL_NORMS
    )
    # three columns, two rows: no strip of five narrow panels
    corners = {
        (round(ax.get_position().x0, 3), round(ax.get_position().y0, 3)) for ax in axes.values()
    }
    assert len({x for x, _ in corners}) == 3 and len({y for _, y in corners}) == 2
    width, height = fig.get_size_inches()
    assert width / height < 2
    for ax in axes.values():
        assert ax.title.get_fontsize() >= 10 and ax.get_xlabel() == "activation"
        assert len(ax.get_lines()) == 3  # the first, middle and last probe step
        assert ax.get_legend().get_texts()[0].get_fontsize() >= 8


def test_a_first_step_spike_does_not_flatten_the_later_histograms(tmp_path: Path) -> None:
    sweep = _copy(tmp_path)
    before = SPEC.data(SPEC.load([sweep]))
    title = f"Standard, layer #{VGG_HIST_LAYER}, seed 0"
    ax = _axes(SPEC.draw(SPEC.load([sweep])))[title]
    assert ax.get_ylim()[1] >= before.loc[before["panel"] == "Standard", "mean"].max()
    assert not ax.texts  # no spike, no zoom

    _spike(sweep)
    table = SPEC.load([sweep])
    data = SPEC.data(table)
    standard = data[data["panel"] == "Standard"]
    first = standard["step"] == standard["step"].min()
    peak, later = standard.loc[first, "mean"].max(), standard.loc[~first, "mean"].max()
    assert peak > ZOOM_ABOVE * later
    # the plotted data is what the runs logged: only the squeezed histogram changed
    others = ~((data["panel"] == "Standard") & (data["step"] == standard["step"].min()))
    pd.testing.assert_frame_equal(
        data[others].reset_index(drop=True), before[others].reset_index(drop=True)
    )
    axes = _axes(SPEC.draw(table))
    ax = axes[title]
    assert later <= ax.get_ylim()[1] < peak
    assert any("off the scale" in t.get_text() and f"{peak:.3g}" in t.get_text() for t in ax.texts)
    # the other norms' panels are not zoomed
    for variant in ALL_NORMS[1:]:
        other = axes[f"{LABELS[variant]}, layer #{VGG_HIST_LAYER}, seed 0"]
        assert other.get_ylim()[1] >= data.loc[data["panel"] == LABELS[variant], "mean"].max()
        assert not other.texts


def test_a_run_without_the_layers_histogram_is_refused(tmp_path: Path) -> None:
    sweep = _copy(tmp_path)
    path = sweep / STANDARD / "act_hist.csv"
    hist = pd.read_csv(path)
    hist[hist["layer"] != VGG_HIST_LAYER].to_csv(path, index=False)
    with pytest.raises(ValueError, match=f"probe.activations.layers must hold {VGG_HIST_LAYER}"):
        SPEC.data(SPEC.load([sweep]))
