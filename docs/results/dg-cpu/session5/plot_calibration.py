"""Bars of image → shape mAP per model, sign codes against bank-median codes, from calibrate_queries.py's reports.

Usage: python plot_calibration.py OUT.png REPORT.json [REPORT.json ...]
(each REPORT.json is the JSON calibrate_queries.py prints last; its title is the file name's stem)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

ROWS = ("sign", "bank median", "random codes")


def main(out: str, reports: list[str]) -> None:
    figure, axes = plt.subplots(1, len(reports), figsize=(4.5 * len(reports), 3.9), squeeze=False)
    for axis, report_path in zip(axes[0], reports):
        report = json.loads(Path(report_path).read_text())
        models = list(report)
        positions = np.arange(len(models))
        for offset, row in enumerate(ROWS):
            values = [report[model][row]["map@all_tie_aware"] for model in models]
            axis.bar(positions + (offset - 1) * 0.27, values, 0.27, label=row)
        axis.set_xticks(positions, [Path(model).parent.name for model in models], rotation=20)
        axis.set_ylabel("image → shape mAP@all (tie-aware)")
        axis.set_title(Path(report_path).stem)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(ROWS), fontsize=8)
    figure.tight_layout(rect=(0, 0.07, 1, 1))
    figure.savefig(out, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
