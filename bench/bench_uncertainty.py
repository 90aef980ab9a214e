"""Does the uncertainty map point at the errors? The bundled brain model on held-out BraTS cases.

    python bench/bench_uncertainty.py [--output FILE] [--figure docs/images/uncertainty-brain.png]

Cases: BraTS 2015 pat0005 (the model's validation case) and pat0006 (its test case), from
../shared/data (skipped when absent), prepared as the model's training data was (FLAIR and T1c,
zero outside the brain mask). Each case is segmented twice in one process (`Segmenter`, automatic
backend, exact): plainly, and with `SegmentOptions(uncertainty=True)`. Reported: inference
time of both (the cost), whole-tumour Dice of both (mirroring TTA changes the labels), the mean
uncertainty on wrong and on right brain voxels (whole tumour vs the manual label), the AUROC of
the uncertainty for telling wrong voxels from right ones, and per predicted lesion (26-connected
component) whether it touches the manual tumour (true) or not (false positive), and whether
its mean uncertainty flags it as low confidence (> `LOW_CONFIDENCE`). The figure shows the axial
slice of pat0006 holding the largest false-positive lesion (else the tumour's centre).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from report import publish  # noqa: E402

from unetseg.engine.confidence import LOW_CONFIDENCE  # noqa: E402
from unetseg.engine.geometry import Geometry  # noqa: E402
from unetseg.engine.lesions import label_lesions  # noqa: E402
from unetseg.engine.options import SegmentOptions  # noqa: E402
from unetseg.engine.predict import Segmenter  # noqa: E402
from unetseg.engine.registry import resolve_model  # noqa: E402

BRATS = REPO.parent / "shared" / "data" / "brats2015"
CASES = {"pat0005": "validation", "pat0006": "test"}


def load_case(name: str) -> tuple[list, Geometry, np.ndarray]:
    """(t1c, flair) `(K, J, I)` zeroed outside the brain, their geometry, the manual label."""
    folder = BRATS / f"brats_2013_{name}_1"
    brain = np.asarray(nib.load(folder / "brainmask.nii.gz").dataobj).transpose(2, 1, 0) > 0

    def read(stem: str) -> np.ndarray:
        data = np.asarray(nib.load(folder / f"{stem}.nii.gz").dataobj, np.float32)
        return np.where(brain, data.transpose(2, 1, 0), 0).astype(np.float32)

    image = nib.load(folder / "T1c_subtrMeanDivStd.nii.gz")
    label = np.asarray(nib.load(folder / "OTMultiClass.nii.gz").dataobj).transpose(2, 1, 0)
    return (
        [read("T1c_subtrMeanDivStd"), read("Flair_subtrMeanDivStd")],
        Geometry.from_nibabel(image),
        label,
    )


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for `positive` (Mann-Whitney, ties averaged)."""
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(average, counts)
    n_pos = int(positive.sum())
    n_neg = len(scores) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def evaluate(name: str, package) -> tuple[dict, dict]:
    images, geometry, label = load_case(name)
    arrays, geometries = [*images, None, None], [geometry, geometry, None, None]
    runs = {}
    for kind, options in (
        ("plain", SegmentOptions()),
        ("uncertainty", SegmentOptions(uncertainty=True)),
    ):
        segmenter = Segmenter(package, options)
        segmenter.segment(arrays, geometries)  # warm-up: compile once, not timed
        started = time.perf_counter()
        runs[kind] = segmenter.segment(arrays, geometries)
        runs[kind].timings["wall"] = time.perf_counter() - started
    result, uncertainty = runs["uncertainty"], runs["uncertainty"].uncertainty
    truth, brain = label > 0, images[0] != 0
    wrong = (result.labels > 0) != truth
    components, counts = label_lesions(result.labels, geometry.spacing)
    lesions = []
    for n in range(1, len(counts)):
        inside = components == n
        score = float(uncertainty[inside].mean())
        lesions.append(
            {"true": bool((inside & truth).any()), "score": score, "voxels": int(counts[n])}
        )
    row = {
        "case": f"{name} ({CASES[name]})",
        "seconds": (runs["plain"].timings["inference"], result.timings["inference"]),
        "dice": (dice(runs["plain"].labels > 0, truth), dice(result.labels > 0, truth)),
        "wrong": float(uncertainty[wrong & brain].mean()),
        "right": float(uncertainty[~wrong & brain].mean()),
        "auroc": auroc(uncertainty[brain].astype(np.float64), wrong[brain]),
        "lesions": lesions,
        "backend": result.backend,
    }
    return row, {
        "images": images,
        "label": label,
        "result": result,
        "components": components,
        "lesions": lesions,
    }


def figure(path: Path, case: dict) -> None:
    """Axial slice of the largest false-positive lesion: FLAIR with the result (red) and the
    manual whole tumour (green), the uncertainty, and the wrong voxels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    flair, label = case["images"][1], case["label"] > 0
    result, components = case["result"], case["components"]
    false = [n for n, lesion in enumerate(case["lesions"], start=1) if not lesion["true"]]
    focus = components == false[0] if false else label
    k = int(np.argmax(focus.sum(axis=(1, 2))))
    predicted = result.labels[k] > 0
    wrong = predicted != label[k]
    titles = ("FLAIR: result (red), manual (green)", "uncertainty (0-1)", "wrong voxels (cyan)")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for axis, title in zip(axes, titles, strict=True):
        axis.imshow(np.flipud(flair[k]), cmap="gray")  # row 0 (posterior) at the bottom
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    axes[0].contour(np.flipud(predicted), [0.5], colors="red", linewidths=1)
    axes[0].contour(np.flipud(label[k]), [0.5], colors="lime", linewidths=1)
    shown = np.ma.masked_less(np.flipud(result.uncertainty[k]), 0.02)
    heat = axes[1].imshow(shown, cmap="hot", vmin=0, vmax=1, alpha=0.85)
    fig.colorbar(heat, ax=axes[1], fraction=0.046)
    axes[2].imshow(np.ma.masked_where(~np.flipud(wrong), np.flipud(wrong)), cmap="cool", alpha=0.8)
    fig.suptitle("brain-tumor-mri on BraTS 2015 pat0006 (test case), axial slice", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def table(rows: list[dict]) -> str:
    lines = [
        "`python bench/bench_uncertainty.py`: `brain-tumor-mri` with `--uncertainty` (mirroring "
        "test-time augmentation, 8 passes per window) on held-out BraTS 2015 cases "
        f"({rows[0]['backend']}). Lesions flagged: mean uncertainty > {LOW_CONFIDENCE}.",
        "",
        "| case | inference s plain / with uncertainty | WT Dice plain / TTA "
        "| mean uncertainty wrong / right voxels | AUROC wrong vs right "
        "| false-positive lesions flagged | true lesions flagged |",
        "|---|---|---|---|---:|---|---|",
    ]
    for row in rows:
        false = [lesion for lesion in row["lesions"] if not lesion["true"]]
        true = [lesion for lesion in row["lesions"] if lesion["true"]]
        flagged = lambda items: sum(item["score"] > LOW_CONFIDENCE for item in items)  # noqa: E731
        lines.append(
            f"| {row['case']} | {row['seconds'][0]:.1f} / {row['seconds'][1]:.1f} "
            f"| {row['dice'][0]:.3f} / {row['dice'][1]:.3f} "
            f"| {row['wrong']:.3f} / {row['right']:.3f} | {row['auroc']:.3f} "
            f"| {flagged(false)} of {len(false)} | {flagged(true)} of {len(true)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="default: BENCHMARKS.md")
    parser.add_argument(
        "--figure", type=Path, default=REPO / "docs" / "images" / "uncertainty-brain.png"
    )
    args = parser.parse_args()
    if not BRATS.is_dir():
        sys.exit(f"{BRATS} not found: nothing to measure")
    package = resolve_model("brain-tumor-mri")
    rows, cases = [], {}
    for name in CASES:
        rows.append((result := evaluate(name, package))[0])
        cases[name] = result[1]
    figure(args.figure, cases["pat0006"])
    publish("## Uncertainty\n\n" + table(rows) + "\n", args.output, quick=False)


if __name__ == "__main__":
    main()
