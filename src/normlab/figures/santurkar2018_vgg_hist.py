"""Santurkar et al. 2018, Fig. 6: histograms of layer #11's activations (the ReLU's input, after
the norm) of the standard net, BN, l_1, l_2 and l_inf normalisation, VGG on CIFAR-10 at lr 0.1.

One panel per norm; in each, the histogram (as a density) of all of the layer's values on the
activation probe's fixed batch at three probe steps: the first (step 0), the one nearest the middle
of training and the last, from `act_hist.csv`. Histograms of different seeds have different bins
(each probe call bins its own range), so each panel shows one run: the lowest seed of its norm
(the figure's title says which); the other seeds' histograms are in their own `act_hist.csv`.

`plot_data`: panel = the norm's label, series = "step N", `step`, then `activation` (the bin's
centre),
`mean` = `min` = `max` the density there, `n` = 1, `n_nonfinite` = 0. Drawn from the figure's own
sweep (`santurkar2018/vgg_fig6_hist`, the same runs as `vgg_fig5a_lp`) or from `vgg_suite`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from normlab.figures import DATA_COLUMNS, N_NONFINITE, FigureSpec, new_figure
from normlab.figures.santurkar2018_common import COLORS, LABELS, VARIANT, select_figure_runs
from normlab.figures.santurkar2018_vgg import ALL_NORMS, CLAIMS_FIG6
from normlab.figures.santurkar2018_vgg_common import LR, STATUSES, scale_text

FIG6_ID = "santurkar2018/vgg_fig6_hist"
LAYER = 11
COUNT = "act_hist/count"
COLUMNS = [*DATA_COLUMNS[:3], "activation", *DATA_COLUMNS[3:], N_NONFINITE]
SHADES = {3: (0.35, 0.65, 1.0), 2: (0.35, 1.0), 1: (1.0,)}  # first .. last step: light to full


def _chosen_steps(steps: np.ndarray) -> list[int]:
    """The first probe step, the one nearest the middle, and the last."""
    steps = np.sort(steps)
    middle = steps[np.argmin(np.abs(steps - (steps[0] + steps[-1]) / 2))]
    return sorted({int(steps[0]), int(middle), int(steps[-1])})


def plot_data(table: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6's numbers from a `load_metrics` table with `act_hist.csv` rows; ValueError naming
    what is missing."""
    runs = select_figure_runs(table, FIG6_ID, ALL_NORMS, lrs=(LR,))
    frames = []
    for variant in ALL_NORMS:
        group = runs[runs[VARIANT] == variant]
        seed = int(group["seed"].min())
        run = group[group["seed"] == seed]
        rows = run[(run["metric"] == COUNT) & (run["layer"] == LAYER)]
        if rows.empty:
            raise ValueError(
                f"{FIG6_ID} ({variant}, seed {seed}): no layer #{LAYER} histogram in act_hist.csv "
                f"of {run['run_dir'].iloc[0]} (probe.activations.layers must hold {LAYER})"
            )
        for step in _chosen_steps(rows["step"].unique()):
            hist = rows[rows["step"] == step].sort_values("bin_lo")
            widths = (hist["bin_hi"] - hist["bin_lo"]).to_numpy(dtype=float)
            counts = hist["value"].to_numpy(dtype=float)
            density = counts / (counts.sum() * widths)
            frames.append(
                pd.DataFrame(
                    {
                        "panel": LABELS[variant],
                        "series": f"step {step}",
                        "step": step,
                        "activation": ((hist["bin_lo"] + hist["bin_hi"]) / 2).to_numpy(dtype=float),
                        "mean": density,
                        "min": density,
                        "max": density,
                        "n": 1,
                        N_NONFINITE: 0,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def draw(table: pd.DataFrame) -> Figure:
    """Fig. 6: `plot_data(table)`, one panel per norm."""
    data = plot_data(table)
    runs = select_figure_runs(table, FIG6_ID, ALL_NORMS, lrs=(LR,))
    fig = new_figure(figsize=(4 * len(ALL_NORMS), 3.6), layout="constrained")
    axes = fig.subplots(1, len(ALL_NORMS), squeeze=False)[0]
    for ax, variant in zip(axes, ALL_NORMS, strict=True):
        panel = data[data["panel"] == LABELS[variant]]
        steps = panel.groupby("step", sort=True)
        for shade, (series, rows) in zip(SHADES[steps.ngroups], steps, strict=True):
            ax.plot(
                rows["activation"],
                rows["mean"],
                color=COLORS[variant],
                alpha=shade,
                lw=1.2,
                label=f"step {series}",
            )
        ax.set(title=f"{LABELS[variant]}, layer #{LAYER}", xlabel="activation", ylabel="density")
        ax.legend(fontsize=7)
    seeds = {v: int(runs.loc[runs[VARIANT] == v, "seed"].min()) for v in ALL_NORMS}
    one_seed = len(set(seeds.values())) == 1
    which = f"seed {next(iter(seeds.values()))}" if one_seed else str(seeds)
    fig.suptitle(
        f"Santurkar 2018 Fig. 6: layer #{LAYER} activation histograms, lr {LR:g} "
        f"({scale_text(runs)})\none run per norm ({which}), on the probe's fixed test batch",
        fontsize=10,
    )
    return fig


FIG6 = FigureSpec(
    id=FIG6_ID,
    title="Santurkar 2018 Fig. 6: layer #11 activation histograms, standard / BN / l_p",
    metrics=(f"act/layer{LAYER}/mean_drift",),
    data=plot_data,
    draw=draw,
    claims=CLAIMS_FIG6,
    files=("act_hist.csv",),
    statuses=STATUSES,
)
