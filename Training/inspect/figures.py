"""PNG figures of a dataset inspection (matplotlib, Agg backend; the ``train`` extra), and the
example slices with their labels (``unetseg.preview`` montages).

Every function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from Training.inspect.embedding import Embedding
from Training.inspect.statistics import CaseSummary, equivalent_diameter_mm, volume_unit
from unetseg.atomic import atomic_path, write_atomically
from unetseg.engine.geometry import Geometry
from unetseg.engine.manifest import LabelSpec

#: Label colours (RGB 0-255), label value v gets ``PALETTE[(v - 1) % len(PALETTE)]``.
PALETTE = (
    (230, 80, 60),
    (80, 170, 240),
    (250, 200, 40),
    (120, 200, 90),
    (200, 110, 220),
    (250, 140, 40),
    (60, 200, 200),
    (240, 120, 170),
    (150, 150, 150),
    (170, 130, 80),
)
DPI = 100
#: Labels drawn in a histogram panel (the largest ones) and in the volume plot.
MAX_LABEL_CURVES = 10
MAX_VOLUME_LABELS = 30
MAX_LEGEND_LABELS = 12


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend; ImportError with the fix when missing."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "the inspection report needs matplotlib: pip install -e '.[train]'"
        ) from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    return plt


def label_colour(value: int) -> tuple[float, float, float]:
    """Colour of label ``value`` as matplotlib RGB floats (0: grey)."""
    if value == 0:
        return (0.45, 0.45, 0.45)
    r, g, b = PALETTE[(value - 1) % len(PALETTE)]
    return (r / 255, g / 255, b / 255)


def _save(figure: Any, path: Path) -> Path:
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=DPI, format="png")
    plt.close(figure)
    return path


def _grid(count: int, columns: int = 2) -> tuple[int, int]:
    columns = min(columns, max(count, 1))
    return (count + columns - 1) // columns, columns


def histograms(
    path: Path,
    groups: Mapping[str, Mapping[str, Mapping[str, Any]]],
    names: Mapping[int, str],
    mask_modes: str,
) -> Path:
    """Per data source (row) and sequence (column), the intensity distribution inside the mask
    (black) and per label."""
    plt = pyplot()
    sequences = list(dict.fromkeys(name for group in groups.values() for name in group))
    rows, columns = len(groups), len(sequences)
    if rows == 1:
        rows, columns = _grid(len(sequences))
    width = 4.6 * columns if columns > 1 else 7.0
    figure, axes = plt.subplots(
        rows, columns, figsize=(width, 3.2 * rows), squeeze=False, layout="constrained"
    )
    panels = [
        (group, sequence, groups[group].get(sequence)) for group in groups for sequence in sequences
    ]
    for axis, (group, sequence, histogram) in zip(axes.flat, panels, strict=False):
        if not histogram or not histogram["edges"]:
            axis.set_visible(False)
            continue
        edges = np.asarray(histogram["edges"])
        centres = (edges[:-1] + edges[1:]) / 2
        width = np.diff(edges)
        total = np.asarray(histogram["all"], dtype=float)
        axis.plot(centres, total / max(total.sum(), 1) / width, color="black", label="mask")
        strata = {
            int(value): np.asarray(counts, dtype=float)
            for value, counts in histogram["strata"].items()
            if int(value) != 0 and sum(counts) > 0
        }
        largest = sorted(strata, key=lambda v: -strata[v].sum())[:MAX_LABEL_CURVES]
        for value in sorted(largest):
            density = strata[value] / strata[value].sum() / width
            axis.plot(centres, density, color=label_colour(value), label=names[value])
        title = sequence if len(groups) == 1 else f"{group}: {sequence}"
        if len(strata) > len(largest):
            title += f" ({len(largest)} largest of {len(strata)} labels)"
        axis.set(title=title, xlabel="intensity", ylabel="density")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6 if len(largest) > 5 else 7, ncols=2 if len(largest) > 5 else 1)
    for axis in list(axes.flat)[len(panels) :]:
        axis.set_visible(False)
    figure.suptitle(f"Intensities inside the mask ({mask_modes}), per label", fontsize=10)
    return _save(figure, path)


def correlation(path: Path, names: Sequence[str], matrix: Sequence[Sequence[float | None]]) -> Path:
    """Heat map of the mean correlation between sequences."""
    plt = pyplot()
    size = len(names)
    values = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    figure, axis = plt.subplots(figsize=(1.1 * size + 2.4, 1.0 * size + 1.6), layout="constrained")
    image = axis.imshow(values, vmin=-1, vmax=1, cmap="coolwarm")
    axis.set_xticks(range(size), names, rotation=45, ha="right")
    axis.set_yticks(range(size), names)
    for a in range(size):
        for b in range(size):
            if np.isfinite(values[a, b]):
                axis.text(b, a, f"{values[a, b]:.2f}", ha="center", va="center", fontsize=9)
    figure.colorbar(image, ax=axis, shrink=0.8, label="Pearson r")
    axis.set_title("Correlation between sequences (mean over cases)", fontsize=10)
    return _save(figure, path)


def label_volumes(path: Path, cases: Sequence[CaseSummary], names: Mapping[int, str]) -> Path:
    """Per label value, its volume (area) in every case holding it (points) and a box plot."""
    plt = pyplot()
    values = sorted({v for case in cases for v in case.label_volumes})
    every = len(values)
    if len(values) > MAX_VOLUME_LABELS:  # the largest ones by median volume
        median = {
            v: float(np.median([c.label_volumes[v] for c in cases if v in c.label_volumes]))
            for v in values
        }
        values = sorted(sorted(values, key=lambda v: -median[v])[:MAX_VOLUME_LABELS])
    unit = volume_unit(cases[0].dims)
    figure, axis = plt.subplots(
        figsize=(min(max(4.0, 0.9 * len(values) + 2), 16.0), 3.8), layout="constrained"
    )
    data = [[c.label_volumes[v] for c in cases if v in c.label_volumes] for v in values]
    if values:
        axis.boxplot(data, positions=range(len(values)), widths=0.5, showfliers=False)
        rng = np.random.default_rng(0)
        for position, (value, volumes) in enumerate(zip(values, data, strict=True)):
            jitter = rng.uniform(-0.15, 0.15, len(volumes))
            axis.scatter(position + jitter, volumes, s=10, color=label_colour(value), zorder=3)
        rotation = 20 if len(values) <= 8 else 70
        axis.set_xticks(
            range(len(values)), [names[v] for v in values], rotation=rotation, ha="right"
        )
        positive = [v for volumes in data for v in volumes if v > 0]
        if positive and max(positive) / min(positive) > 100:
            axis.set_yscale("log")
    axis.set(ylabel=f"volume ({unit})" if unit == "mL" else f"area ({unit})")
    shown = f" ({len(values)} largest of {every} labels)" if every > len(values) else ""
    title = f"Label {'volumes' if unit == 'mL' else 'areas'} per case{shown}"
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    return _save(figure, path)


def lesion_sizes(path: Path, cases: Sequence[CaseSummary]) -> Path:
    """Distribution of the connected components' equivalent diameters, and components per case."""
    plt = pyplot()
    dims = cases[0].dims
    diameters = [equivalent_diameter_mm(s, dims) for c in cases for s in c.lesion_sizes]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4), layout="constrained")
    if diameters:
        low, high = max(min(diameters), 0.1), max(max(diameters), 0.2)
        bins = np.geomspace(low, high * 1.001, 25) if high > low else 10
        left.hist(diameters, bins=bins, color="C0")
        if high > low:
            left.set_xscale("log")
    left.set(xlabel="equivalent diameter (mm)", ylabel="components")
    left.set_title(f"Component sizes ({len(diameters)} components)", fontsize=10)
    counts = [len(c.lesion_sizes) for c in cases]
    right.hist(counts, bins=np.arange(max(counts, default=0) + 2) - 0.5, color="C1")
    right.set(xlabel="components per case", ylabel="cases")
    right.set_title("Connected components of the labels", fontsize=10)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    return _save(figure, path)


def geometry(path: Path, cases: Sequence[CaseSummary]) -> Path:
    """Spacing and size per case and axis; flagged cases in red."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.4), layout="constrained")
    order = np.arange(len(cases))
    flagged = np.array([bool(c.flags) for c in cases])
    for axis, attribute, label in ((left, "spacing", "spacing (mm)"), (right, "shape", "voxels")):
        for n, name in enumerate("xyz"[: max(c.dims for c in cases)]):
            values = np.array([getattr(c, attribute)[n] if n < c.dims else np.nan for c in cases])
            axis.plot(order, values, ".", color=f"C{n}", label=name)
            axis.plot(order[flagged], values[flagged], "o", mfc="none", color="red")
        axis.set(xlabel="case", ylabel=label)
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    left.set_title("Voxel spacing per case (red rings: flagged cases)", fontsize=10)
    right.set_title("Image size per case", fontsize=10)
    return _save(figure, path)


def intensities(path: Path, cases: Sequence[CaseSummary], sequences: Sequence[str]) -> Path:
    """Per sequence and case, the median intensity inside the mask with its p1-p99 range."""
    plt = pyplot()
    rows, columns = _grid(len(sequences))
    figure, axes = plt.subplots(
        rows, columns, figsize=(5.2 * columns, 2.9 * rows), squeeze=False, layout="constrained"
    )
    for axis, name in zip(axes.flat, sequences, strict=False):
        for n, case in enumerate(cases):
            stats = case.intensity.get(name)
            if not stats:
                continue
            colour = "red" if any(flag.startswith(f"{name} ") for flag in case.flags) else "C0"
            axis.plot([n, n], [stats["p1"], stats["p99"]], color=colour, linewidth=1)
            axis.plot(n, stats["p50"], "o", color=colour, markersize=3)
        axis.set(title=name, xlabel="case", ylabel="p1 / median / p99")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(sequences) :]:
        axis.set_visible(False)
    figure.suptitle("Intensity range per case inside the mask (red: flagged)", fontsize=10)
    return _save(figure, path)


def embedding(
    path: Path, result: Embedding, names: Mapping[int, str], groups: Sequence[str], by: str
) -> Path:
    """The 2D map coloured by label (left) and by ``by`` (case or data source, right)."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.6), layout="constrained")
    xy = result.coordinates
    for value in np.unique(result.strata):
        chosen = result.strata == value
        left.scatter(
            xy[chosen, 0],
            xy[chosen, 1],
            s=4,
            color=label_colour(int(value)),
            label=names[int(value)],
            alpha=0.7,
        )
    labels = np.unique(result.strata).size
    if labels <= MAX_LEGEND_LABELS:
        left.legend(fontsize=7, markerscale=3)
    left.set_title(f"Coloured by label ({labels})", fontsize=10)
    group_of = np.asarray([groups[c] for c in result.cases])
    unique = list(dict.fromkeys(group_of.tolist()))
    if len(unique) <= 10:
        for n, name in enumerate(unique):
            chosen = group_of == name
            right.scatter(xy[chosen, 0], xy[chosen, 1], s=4, color=f"C{n}", label=name, alpha=0.7)
        right.legend(fontsize=7, markerscale=3)
    else:
        index = np.array([unique.index(g) for g in group_of])
        points = right.scatter(xy[:, 0], xy[:, 1], s=4, c=index, cmap="viridis", alpha=0.7)
        figure.colorbar(points, ax=right, label=f"{by} number")
    right.set_title(f"Coloured by {by}", fontsize=10)
    for axis in (left, right):
        axis.set_xticks([])
        axis.set_yticks([])
    features = ", ".join(result.features)
    figure.suptitle(f"{result.method} of {len(xy)} sampled voxels ({features})", fontsize=9)
    return _save(figure, path)


def example(
    path: Path,
    images: Mapping[str, np.ndarray],
    label: np.ndarray | None,
    geometry: Geometry,
    names: Mapping[int, str],
    title: str,
    max_sequences: int = 4,
) -> Path:
    """Montage (``unetseg.preview.overlay_montage``) of the label over each sequence (up to
    ``max_sequences``), one row per sequence."""
    from PIL import Image

    from unetseg.preview import overlay_montage

    labels = np.zeros(geometry.shape, np.uint8) if label is None else label.reshape(geometry.shape)
    present = [int(v) for v in np.unique(labels) if v != 0]
    specs = [
        LabelSpec(v, names.get(v, f"label {v}"), PALETTE[(v - 1) % len(PALETTE)], None)
        for v in present
    ]
    rows = [
        overlay_montage(image, labels, geometry, specs, title=f"{title}: {name}")
        for name, image in list(images.items())[:max_sequences]
    ]
    canvas = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)))
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height
    import io

    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return write_atomically(path, buffer.getvalue())
