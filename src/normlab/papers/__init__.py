"""The papers normlab reproduces, one package each: `ioffe2015`, `santurkar2018`. A paper package
holds one module per figure (its `FIGURE`: panels and claims), at the path of the figure's preset
(`conf/experiment/<paper>/<figure>.yaml`), its `protocol` (the paper's facts the figures read) and
the measures its figures share. `normlab.report.registry` finds the figures."""
