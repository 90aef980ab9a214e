"""Run the UNetSeg command line inside 3D Slicer (or plain Python on ``slicer-core``).

Usage (Slicer's own Python, real MRML and the app's scene)::

    Slicer --no-splash --no-main-window --python-script <repo>/unetseg/scripts/slicer_segment.py \
        -- segment --model MODEL --input FILES_OR_DICOM_FOLDER... --output OUT.seg.nrrd \
        [--dicom-seg OUT.dcm] [--summary OUT.json] [--device auto|cpu|cuda]

Everything after ``--`` is passed to ``python -m unetseg`` (``segment``, ``models``, ``demo``);
the exit code is the command's (0 success, 2 a clear error). Slicer runs the script as
``__main__`` with ``sys.argv`` = the script path and the remaining arguments; without ``--``
all of them are used.
Plain ``python unetseg/scripts/slicer_segment.py -- segment ...`` works the same on ``slicer-core``.
"""

import sys
from pathlib import Path


def _command_arguments(argv: list[str]) -> list[str]:
    """The arguments for ``unetseg.cli.main``: those after the first ``--``, else argv[1:]."""
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv[1:]


def _exit(code: int) -> None:
    """Leave Slicer with ``code`` (its event loop must stop), or plain Python."""
    import slicer

    if getattr(slicer, "app", None) is not None:
        slicer.util.exit(code)
    else:
        sys.exit(code)


def main() -> None:
    # The library sits two folders up (<repo>/unetseg/scripts/); Slicer does not add it.
    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from unetseg.cli import main as cli_main

    _exit(cli_main(_command_arguments(sys.argv)))


if __name__ == "__main__":
    main()
