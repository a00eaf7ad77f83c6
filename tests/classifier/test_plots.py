"""The one plotting module: every chart of both libraries writes a PNG, and importing it
costs no matplotlib import."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from imagery import plots

PNG = b"\x89PNG"


def test_importing_the_plots_does_not_import_matplotlib():
    code = "import imagery.plots, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_each_chart_writes_a_png(tmp_path):
    rows = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_f2": 0.5 + e / 10}
            for e in (1, 2, 3)]
    plots.learning_curves({"original": rows, "dehazed": []}, tmp_path / "curves.png")
    plots.label_bars({"agave": {"f2": 0.8}, "cirrus": {"f2": 0.4}}, tmp_path / "labels.png")
    plots.ablation_bars([("full", 0.91), ("no TTA", 0.9)], tmp_path / "ablation.png")
    curve = (np.linspace(1, 0.2, 5), np.linspace(0, 1, 5))
    result = {"i2t": 0.7, "t2i": 0.6, "i2i": 0.8,
              "pr": {"i2t": curve, "t2i": curve, "i2i": curve}}
    plots.pr_curves({16: result, 32: result}, tmp_path / "pr.png", "ssah")
    for name in ("curves", "labels", "ablation", "pr"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == PNG
