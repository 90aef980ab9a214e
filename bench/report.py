"""Publishing a benchmark's Markdown section: print it and put it into BENCHMARKS.md."""

from __future__ import annotations

import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(path: Path, section: str) -> None:
    """Replace the section of `path` whose "## " heading is the first line of `section` (up to
    the next "## " heading), or append it; the file is created when missing."""
    heading = section.splitlines()[0]
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def publish(section: str, output: Path | None, quick: bool) -> None:
    """Print `section`; write it to `output`, or to BENCHMARKS.md unless it is a quick run."""
    print(section)
    target = output or (None if quick else BENCHMARKS)
    if target is not None:
        replace_section(target, section)
        print(f"written to {target}", file=sys.stderr)
