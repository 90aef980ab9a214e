"""``python -m unetseg.web [--host 127.0.0.1] [--port 8080] [--data PATH] [--output PATH]``.

Starts the web face and prints its address. Binds to 127.0.0.1 unless ``--host`` says
otherwise (anyone who can reach the port can read ``--data`` and write into ``--output``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from unetseg.exits import run_command

PROG = "python -m unetseg.web"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="UNetSeg in the browser: load, Segment, correct, save (trame-slicer).",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="default %(default)s")
    parser.add_argument("--data", type=Path, help="server folder offered for loading (read only)")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("out/web"),
        help="the only folder saving writes to (default %(default)s)",
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=1024, help="upload size limit (default %(default)s)"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the options and serve until interrupted; exit codes as every UNetSeg command
    (``unetseg.exits``): 2 with one line on stderr for a bad option, a missing extra or a
    port in use, 130 on SIGINT/SIGTERM."""
    args = _parser().parse_args(argv)
    return run_command(PROG, lambda: _serve(args), args.debug)


def _serve(args: argparse.Namespace) -> int:
    if args.data is not None and not args.data.is_dir():
        raise ValueError(f"--data {args.data} is not a folder")
    if args.max_upload_mb <= 0:
        raise ValueError("--max-upload-mb must be positive")
    try:
        from trame.app import get_server
        from trame_slicer.app import SegmentationApp  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"the web face needs the 'web' extra ({error}): run `make web`, then "
            f".venv-web/bin/{PROG}"
        ) from None
    from unetseg.web.app import WebApp, WebConfig

    os.environ.pop("DISPLAY", None)  # render off screen (OSMesa), never on an X display
    server = get_server("unetseg-web", client_type="vue3")
    config = WebConfig(
        output=args.output, data=args.data, max_upload_bytes=int(args.max_upload_mb * 1e6)
    )
    WebApp(server, config)
    sys.argv = sys.argv[:1]  # trame parses the command line too: give it nothing of ours
    server.start(host=args.host, port=args.port, open_browser=False, timeout=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
