"""Running ``python -m unetseg`` in the test process and checking its one-line errors, as the
command-line, input, output and fault tests do."""

from __future__ import annotations

from collections.abc import Iterable

from unetseg.cli import main


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m unetseg ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def segment_args(model, inputs: Iterable, output, *extra) -> list[str]:
    """``segment --model MODEL --input INPUTS... --output OUTPUT EXTRA...`` as strings."""
    inputs = [str(p) for p in inputs]
    return ["segment", "--model", str(model), "--input", *inputs, "--output", str(output), *extra]


def assert_one_line_error(code: int, err: str, *phrases: str, prefix: str = "unetseg") -> str:
    """Exit code 2 and exactly one stderr line, ``<prefix>...: error: ...``, holding every
    phrase; returns the line."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix) and ": error: " in lines[0], lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]
