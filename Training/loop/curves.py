"""Per-epoch metrics of a run: ``metrics.csv``, ``metrics.json`` and ``curves.png``.

``history`` is a list of flat dicts, one per epoch (keys such as ``epoch``, ``train_loss``,
``val_loss``, ``val_dice``, ``val_precision``, ``val_recall``, ``dice_<label>``...); values
missing in an epoch (no validation that epoch) are empty in the CSV and gaps in the plots.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unetseg.atomic import write_atomically

logger = logging.getLogger(__name__)

# (panel title, key of the mean curve, prefix of per-label curves, other keys)
PANELS = (
    ("Loss", None, None, ("train_loss", "val_loss")),
    ("Dice", "val_dice", "dice_", ()),
    ("Precision", "val_precision", "precision_", ()),
    ("Recall (sensitivity)", "val_recall", "recall_", ()),
)


def write_history(run_dir: str | Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Write ``metrics.csv`` and ``metrics.json`` in ``run_dir`` (atomically). Non-finite
    values (a NaN metric) are written as empty cells / ``null`` and logged, never raised."""
    run_dir = Path(run_dir)
    history = [_finite_row(row) for row in history]
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    write_atomically(run_dir / "metrics.csv", text.getvalue().encode())
    payload = json.dumps(list(history), indent=1, allow_nan=False)
    write_atomically(run_dir / "metrics.json", payload.encode())


def _finite_row(row: Mapping[str, Any]) -> dict[str, Any]:
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        logger.warning("epoch %s: %s not finite, written as empty", row.get("epoch"), bad)
    return {k: None if k in bad else v for k, v in row.items()}


def plot_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> bool:
    """Learning curves (loss, Dice, precision, recall per epoch) as a PNG. Returns False (and
    logs why) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        logger.warning("matplotlib is not installed: no learning-curve plot")
        return False
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), constrained_layout=True)
    for ax, (title, mean_key, prefix, keys) in zip(axes.ravel(), PANELS, strict=True):
        names = list(keys)
        if mean_key is not None:
            names.append(mean_key)
            names += sorted({k for row in history for k in row if k.startswith(prefix or "~")})
        for key in names:
            points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                style = {"linewidth": 2.2} if key in (mean_key, *keys) else {"alpha": 0.7}
                ax.plot(xs, ys, marker="o", markersize=3, label=_legend(key, prefix), **style)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if mean_key is not None:
            ax.set_ylim(-0.02, 1.02)
        if ax.has_data():
            ax.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    write_atomically(Path(path), buffer.getvalue())
    return True


def _legend(key: str, prefix: str | None) -> str:
    if prefix and key.startswith(prefix):
        return key[len(prefix) :]
    return {"val_dice": "mean", "val_precision": "mean", "val_recall": "mean"}.get(
        key, key.replace("_", " ")
    )
