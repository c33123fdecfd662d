"""The HTML report in a real browser: headless Chromium loads index.html without a
console message and draws a page that is not blank (no root needed)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from emulator.report.writers import write_all
from tests.unit.test_html_page import corridor_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make test installs it)")


def load(page: Path, screenshot: Path) -> tuple[list[str], float]:
    """Open `page` in headless Chromium, screenshot it; the console lines it logged and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", "--window-size=1200,2000", f"--screenshot={screenshot}",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode == 0 and screenshot.exists(), done.stderr[-2000:]
    # Chromium logs every console message of the page (log, warning, error, an
    # uncaught exception) as ':CONSOLE' at --v=0
    return [line for line in done.stderr.splitlines() if ":CONSOLE" in line], elapsed


def distinct_colours(png: Path) -> int:
    from matplotlib import image

    pixels = image.imread(str(png))
    flat = (pixels[..., :3] * 255).astype("uint8").reshape(-1, 3)
    return len({tuple(p) for p in flat[:: max(1, len(flat) // 200_000)]})


def test_the_console_check_sees_a_broken_page(tmp_path: Path) -> None:
    """The check below can fail: a page with a script error is caught."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p><script>nosuchfunction();</script></body></html>")
    console, _ = load(broken, tmp_path / "broken.png")
    assert any("nosuchfunction" in line for line in console), console


def test_the_report_page_loads_without_console_messages_and_is_drawn(tmp_path: Path) -> None:
    files = write_all(corridor_report(), tmp_path / "report")
    console, elapsed = load(Path(files["html"]), tmp_path / "shot.png")
    assert console == [], console
    # a blank page has one colour; text, tables, the topology and the plots give hundreds
    assert distinct_colours(tmp_path / "shot.png") > 50
    print(f"index.html rendered by headless Chromium in {elapsed:.2f} s (process start included)")
