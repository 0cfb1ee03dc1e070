"""End to end in a real browser: Playwright (Python) drives Debian's Chromium against `tinyfront app`.

Starts the app on a free loopback port in a temporary working folder, launches a tiny real search
from the Search page (2 trials, 1 epoch, width 0.25, int8), waits for the trials, opens the Pareto
front, selects a point (which opens it on the Candidate page), downloads its TFLite Micro bundle
and checks the zip. A screenshot of each page is saved under ``tmp_path`` and copied to
``$TINYFRONT_SCREENS`` (default ``/work/screens`` when that folder exists).
Skips when Chromium (``/usr/bin/chromium``) or the ``playwright`` package is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SEARCH_TIMEOUT_S = 240

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    work = tmp_path / "work"
    work.mkdir()
    port = _free_port()
    log = open(tmp_path / "app.log", "wb")  # noqa: SIM115 - closed in the teardown
    proc = subprocess.Popen(
        [sys.executable, "-m", "explorer.cli", "app", "--port", str(port), "--workdir", str(work)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"the app did not start: {(tmp_path / 'app.log').read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield url
    finally:
        from explorer.app import launcher

        for study in launcher.list_runs(work):
            record = launcher.read_run(work, study)
            if record is not None and launcher.run_status(record).state == "running":
                launcher.stop(work, record, wait=5)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _screens(tmp_path: Path) -> tuple[Path, Path | None]:
    local = tmp_path / "screens"
    local.mkdir(exist_ok=True)
    shared = os.environ.get("TINYFRONT_SCREENS") or ("/work/screens" if Path("/work").is_dir() else "")
    target = Path(shared) if shared else None
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
    return local, target


def _set_number(page: object, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)  # type: ignore[attr-defined]
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(400)  # type: ignore[attr-defined]


def _drive(page: Any, app_url: str, shot: Callable[[str], None], tmp_path: Path) -> None:
    """The user's path: launch a tiny search, wait, open the front, select a point, download its TFLM bundle."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # the default 5 s is short for a busy 2-core CI machine
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Search").first).to_be_visible()
    # Budgets of the default target are shown and editable.
    expect(page.get_by_label("Flash budget (KB)")).to_have_value("1792.00")
    _set_number(page, "Width max", "0.25")
    _set_number(page, "Sparsity max", "0.00")
    for chip in ("float32", "int8_qat", "int16x8"):
        page.get_by_role("button", name=f"Remove {chip}", exact=True).first.click()
        page.wait_for_timeout(300)
    _set_number(page, "Trials", "2")
    _set_number(page, "Epochs", "1")
    _set_number(page, "Fine-tune epochs", "0")
    page.get_by_label("Study name").fill("browser")
    page.get_by_label("Study name").press("Enter")
    page.wait_for_timeout(400)
    page.get_by_role("button", name="Launch search").click()
    expect(page.get_by_text("Status: running")).to_be_visible(timeout=30_000)
    shot("1-search-running")
    expect(page.get_by_text("2 of 2 trials done")).to_be_visible(timeout=SEARCH_TIMEOUT_S * 1000)
    expect(page.get_by_text("Search finished.")).to_be_visible(timeout=30_000)
    shot("2-search-finished")

    page.get_by_role("link", name="Pareto front").first.click()
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
    expect(page.locator("g.points path").first).to_be_attached()
    expect(page.get_by_text("2 finished")).to_be_visible()
    shot("3-front")
    box = page.locator("g.points path").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)  # plotly picks the point under the hover, then the click selects it
    page.wait_for_timeout(500)
    page.mouse.click(x, y)
    expect(page.get_by_role("heading", name="Candidate").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Against the budgets")).to_be_visible()
    expect(page.get_by_text("Accuracy (deployed)")).to_be_visible()
    shot("4-candidate")

    page.get_by_role("link", name="Export").first.click()
    button = page.get_by_role("button", name="Download TFLM bundle")
    expect(button).to_be_visible(timeout=180_000)
    shot("5-export")
    with page.expect_download() as download_info:
        button.click()
    download_info.value.save_as(tmp_path / "bundle.zip")


def test_search_front_select_download(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    local, shared = _screens(tmp_path)
    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(60_000)

        def shot(name: str) -> None:
            page.wait_for_timeout(800)
            path = local / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            shots.append(path)

        try:
            _drive(page, app_url, shot, tmp_path)
        except Exception:
            page.screenshot(path=str(local / "failure.png"), full_page=True)
            if shared is not None:
                shutil.copy2(local / "failure.png", shared / "failure.png")
            raise
        finally:
            browser.close()
    zip_path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        model = zf.read(next(n for n in names if n.endswith("model_data.cc")))
    assert any(n.endswith("model_data.cc") for n in names), names
    assert any(n.endswith("model_settings.h") for n in names), names
    assert any(n.endswith("Makefile") or n.endswith("CMakeLists.txt") for n in names), names
    assert b"g_model_data" in model
    assert len(shots) == 5
    if shared is not None:
        for path in shots:
            shutil.copy2(path, shared / path.name)
