"""Helpers of the browser tests: the web server as a subprocess and a Playwright page on it.

The server runs ``python -m unetseg.web`` on a free port of 127.0.0.1 with its own output,
data and temporary folders, without ``DISPLAY`` (VTK renders through OSMesa). Chromium is
Debian's (``/usr/bin/chromium``): Playwright downloads no browser.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("UNETSEG_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_SECONDS = 180


@dataclass
class WebServer:
    """A running ``python -m unetseg.web`` and its folders."""

    url: str
    process: subprocess.Popen
    root: Path
    output: Path
    data: Path
    temporary: Path
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(root: Path) -> WebServer:
    """Start the server in ``root`` (folders output/, data/, tmp/) and wait until it listens."""
    output, data, temporary = root / "output", root / "data", root / "tmp"
    for folder in (output, data, temporary):
        folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, TMPDIR=str(temporary), PYTHONUNBUFFERED="1")
    env.pop("DISPLAY", None)
    log = root / "server.log"
    command = [sys.executable, "-m", "unetseg.web", "--port", str(port)]
    command += ["--output", str(output), "--data", str(data)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=sink)
    server = WebServer(f"http://127.0.0.1:{port}/", process, root, output, data, temporary, log)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the web server exited:\n{server.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"the web server did not listen within {START_SECONDS} s")


class Page:
    """A Playwright page on the app, with access to the trame state."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def open(self, url: str) -> None:
        self.page.set_default_timeout(20000)
        self.page.goto(url)
        self.wait("window.trame && window.trame.state && window.trame.state.get('us_samples')")
        # One server serves every test and its state outlives a page: start from the defaults.
        self.set("us_overlap", "")
        self.set("us_fast", False)
        self.show_panel()

    def show_panel(self) -> None:
        """Open the UNetSeg panel in the drawer (the app switches to the editor after a run)."""
        if not self.page.locator("#us-panel").is_visible():
            self.page.click("#us-panel-button")
            self.page.locator("#us-panel").wait_for(state="visible")

    def get(self, key: str) -> Any:
        return self.page.evaluate(f"window.trame.state.get({json.dumps(key)})")

    def set(self, key: str, value: Any) -> None:
        self.page.evaluate(f"window.trame.state.set({json.dumps(key)}, {json.dumps(value)})")

    def wait(self, condition: str, timeout_s: float = 120) -> None:
        """Wait until the JavaScript ``condition`` holds (``S(key)`` reads the state)."""
        script = f"(() => {{ const S = (k) => window.trame.state.get(k); return {condition}; }})()"
        self.page.wait_for_function(script, timeout=timeout_s * 1000)

    def message(self) -> tuple[str, str]:
        return self.get("us_message"), self.get("us_message_type")

    def clear_message(self) -> None:
        self.set("us_message", "")
        self.page.wait_for_timeout(200)

    def choose(self, select_id: str, option_text: str) -> None:
        """Pick ``option_text`` in the Vuetify select ``#select_id`` with the mouse."""
        self.page.locator(f".v-input:has(#{select_id}) .v-field").click()
        self.page.locator(".v-overlay .v-list-item", has_text=option_text).first.click()
        self.page.keyboard.press("Escape")

    def load_sample(self, title_part: str) -> None:
        self.show_panel()
        self.clear_message()
        self.choose("us-sample", title_part)
        self.page.click("#us-load-sample")
        self.wait("S('us_message') !== ''")
        text, kind = self.message()
        assert kind == "success", text

    def segment(self, timeout_s: float = 300) -> None:
        self.clear_message()
        self.page.click("#us-segment")
        self.wait(
            "S('us_message') !== '' && !S('us_running') && S('us_message_type') !== 'info'",
            timeout_s,
        )
        text, kind = self.message()
        assert kind == "success" and self.get("us_has_result"), text

    def upload(self, name: str, content: bytes) -> tuple[str, str]:
        """Upload one file through the panel's file input; returns the message."""
        self.show_panel()
        self.clear_message()
        self.page.set_input_files(
            "#us-upload",
            files=[{"name": name, "mimeType": "application/octet-stream", "buffer": content}],
        )
        self.wait("S('us_message') !== '' && !S('us_upload_busy')")
        return self.message()
