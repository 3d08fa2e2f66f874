"""Debian's ``chromium``, headless, on local files only (no network, fresh profile)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = shutil.which("chromium")

# Offline and quiet: no first-run UI, no background fetches, no component updates, no
# sync, no QUIC; a fresh, empty profile per call. No host name resolves, so a page that
# needed anything from the network would not render: the report must be self-contained.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--host-resolver-rules=MAP * ~NOTFOUND")


def run(page: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Load ``page`` (a local file) in headless Chromium with ``args``.

    ``--virtual-time-budget`` lets the page's scripts (here: Plotly's rendering and the
    page's own chart check) run to completion before the DOM is dumped or the screenshot
    taken.
    """
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (scripts/bootstrap.sh installs it)")
    with tempfile.TemporaryDirectory(prefix="otel-rtc-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000",
             *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    res = run(page, "--dump-dom")
    if res.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({res.returncode}): {res.stderr[-2000:]}")
    return res.stdout


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 3900) -> Path:
    """A PNG of the page's first ``height`` pixels."""
    res = run(page, f"--screenshot={png}", f"--window-size={width},{height}")
    if res.returncode != 0 or not png.exists():
        raise RuntimeError(f"chromium --screenshot failed ({res.returncode}): "
                           f"{res.stderr[-2000:]}")
    return png
