"""End to end in a real browser: Playwright (Python) drives Debian's Chromium against `tinyfront app`.

Starts the app on a free loopback port in a temporary working folder at 1400x900, and walks the
user's path: invalid trial counts refused with a visible reason (issue 11 item 4); a tiny real
search launched (2 trials, 1 epoch, width 0.25, int8) with its progress on top; the Pareto page
right after launch waits instead of erroring (item 5); a finished search is not "running"
(item 5); a what-if flash budget shown by a banner on every page and reset once (item 1); the
All trials table opens a candidate on a row click (item 11); the Analysis page draws Optuna's
hypervolume history, importances and parallel coordinates (item 12); a deep link reproduces the
candidate view in a fresh browser context (item 9); a point on the front opens the Candidate
page, and its TFLite Micro bundle downloads and is checked. A screenshot of each step is saved
under ``tmp_path`` (and copied to ``$TINYFRONT_SCREENS`` when that is set).
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
    shared = os.environ.get("TINYFRONT_SCREENS", "")
    target = Path(shared) if shared else None
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
    return local, target


def _set_number(page: object, label: str, value: str) -> None:
    box = page.get_by_role("spinbutton", name=label, exact=True)  # type: ignore[attr-defined]
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(400)  # type: ignore[attr-defined]


def _no_error(page: Any) -> None:
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.all_inner_texts()


def _open_candidate(
    page: Any, ready: str, selector: str, at: Callable[[dict[str, float]], tuple[float, float]]
) -> None:
    """Click the first ``selector`` element at ``at(its box)`` and wait for the Candidate page it opens.

    Right after a page switch Streamlit still shows the previous page's elements (another page's
    chart points and tables among them) until the new run ends, and an element can be detached
    between finding it and measuring it. So: wait for ``ready``, a text only the new page draws,
    measure the element again until it has a box, and click again if a click was lost.
    """
    from playwright.sync_api import expect

    expect(page.get_by_text(ready).first).to_be_visible()
    candidate = page.get_by_role("heading", name="Candidate").first
    for _attempt in range(3):
        box = None
        deadline = time.monotonic() + 60
        while box is None and time.monotonic() < deadline:
            element = page.locator(selector).first
            box = element.bounding_box() if element.count() else None
            if box is None:
                page.wait_for_timeout(250)
        assert box is not None, f"no {selector} became visible within 60 s"
        x, y = at(box)
        page.mouse.move(x, y)  # plotly picks the point under the hover, then the click selects it
        page.wait_for_timeout(500)
        page.mouse.click(x, y)
        try:
            expect(candidate).to_be_visible(timeout=20_000)
            return
        except AssertionError:
            continue
    expect(candidate).to_be_visible(timeout=30_000)


def _centre(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def _first_row(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + 12, box["y"] + 36 + 18  # the first data row's selection cell


def _drive(page: Any, app_url: str, shot: Callable[[str], None], tmp_path: Path, context: Any) -> None:
    """The user's path (see the module docstring)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # the default 5 s is short for a busy 2-core CI machine
    page.goto(app_url)
    expect(page.get_by_role("heading", name="Search").first).to_be_visible()
    # Budgets of the default target are shown and editable, in KiB.
    expect(page.get_by_role("spinbutton", name="Flash budget (KiB)")).to_have_value("1792.0")
    _set_number(page, "Width max", "0.25")
    _set_number(page, "Sparsity max", "0.00")
    for chip in ("float32", "int8_qat", "int16x8"):
        page.get_by_role("button", name=f"Remove {chip}", exact=True).first.click()
        page.wait_for_timeout(300)
    page.get_by_label("Study name").fill("browser")
    page.get_by_label("Study name").press("Enter")
    page.wait_for_timeout(400)
    # Item 4: 0, -5 and 100000 trials are refused with a visible reason, and nothing launches.
    for bad in ("0", "-5", "100000"):
        _set_number(page, "Trials", bad)
        expect(page.get_by_text(f"trials must be a whole number from 1 to 1,000, got {bad}")).to_be_visible()
    page.get_by_role("button", name="Launch search").click()
    expect(page.get_by_text("Nothing launched: fix the values above first.")).to_be_visible()
    shot("01-invalid-trials")
    assert not (tmp_path / "work" / ".tinyfront" / "runs" / "browser.json").exists()
    _set_number(page, "Trials", "2")
    _set_number(page, "Epochs", "1")
    _set_number(page, "Fine-tune epochs", "0")
    page.get_by_role("button", name="Launch search").click()
    expect(page.get_by_text("Status: running")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Status: running")).to_be_in_viewport()  # item 14: the progress is where the user is
    shot("02-search-running")
    # Item 14 / 9: a reload keeps the study (the address bar carries it) and the form shows the running search's values.
    assert "study=browser" in page.url, page.url
    page.reload()
    expect(page.get_by_text("Status: running")).to_be_visible(timeout=30_000)
    page.get_by_text("New search (another study").click()
    expect(page.get_by_role("spinbutton", name="Trials", exact=True)).to_have_value("2")
    expect(page.get_by_role("spinbutton", name="Epochs", exact=True)).to_have_value("1")
    expect(page.get_by_label("Study name")).to_have_value("browser")
    # Item 5: the Pareto page right after launch waits for the first trial; no red "no study".
    page.get_by_role("link", name="Pareto front").first.click()
    expect(page.get_by_role("heading", name="Pareto front").first).to_be_visible()
    page.wait_for_timeout(1500)
    _no_error(page)
    shot("03-front-while-running")
    page.get_by_role("link", name="Search").first.click()
    expect(page.get_by_text("2 of 2 trials done")).to_be_visible(timeout=SEARCH_TIMEOUT_S * 1000)
    expect(page.get_by_text("Search finished.")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Status: running")).to_have_count(0)
    expect(page.get_by_text("Status: finished")).to_be_visible()
    shot("04-search-finished")

    page.get_by_role("link", name="Pareto front").first.click()
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
    expect(page.locator("g.points path").first).to_be_attached()
    expect(page.get_by_text("2 finished")).to_be_visible()
    expect(page.get_by_text("A search is running")).to_have_count(0)
    shot("05-front")
    # Item 1: a what-if flash budget below every trial: the banner says so on every page, one Reset.
    _set_number(page, "Flash budget (KiB)", "1.0")
    expect(page.get_by_text("What-if budgets active")).to_be_visible()
    expect(page.get_by_text("0 within budgets")).to_be_visible()
    shot("06-front-what-if")
    page.get_by_role("link", name="Candidate").first.click()
    expect(page.get_by_role("heading", name="Candidate").first).to_be_visible()
    expect(page.get_by_text("What-if budgets active")).to_be_visible()
    expect(page.get_by_text("over budget").first).to_be_visible()
    shot("07-candidate-what-if")
    page.get_by_role("link", name="All trials").first.click()
    expect(page.get_by_text("What-if budgets active")).to_be_visible()
    page.get_by_role("button", name="Reset budgets").click()
    expect(page.get_by_text("What-if budgets active")).to_have_count(0)
    page.get_by_role("link", name="Pareto front").first.click()
    expect(page.get_by_role("spinbutton", name="Flash budget (KiB)")).to_have_value("1792.0")
    expect(page.get_by_text("What-if budgets active")).to_have_count(0)

    # Item 12: Optuna's analysis.
    page.get_by_role("link", name="Analysis").first.click()
    expect(page.get_by_role("heading", name="Hypervolume over trials")).to_be_visible()
    expect(page.locator('[data-testid="stPlotlyChart"]').first).to_be_visible()
    # Two trials of one width, sparsity and precision: nothing to rank or spread yet, and the page says so
    # (the AppTest suite checks the three charts on a 30-trial study).
    expect(page.get_by_text("Importances need at least 4 finished trials")).to_be_visible()
    expect(page.get_by_text("No parameter varied yet.")).to_be_visible()
    _no_error(page)
    shot("08-analysis")

    # Item 11: every trial in a table; a click on a row opens it.
    page.get_by_role("link", name="All trials").first.click()
    ready = "Click a column title to sort, a row to open the trial."
    expect(page.get_by_text(ready).first).to_be_visible()
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible()
    shot("09-all-trials")
    _open_candidate(page, ready, '[data-testid="stDataFrame"]', _first_row)
    heading = page.get_by_role("heading", name="Trial ").first
    expect(heading).to_be_visible()
    number = int(heading.inner_text().split()[1])

    # Item 9: the address bar is a deep link: a fresh browser context opens the same candidate.
    link = page.url
    assert "study=browser" in link and f"trial={number}" in link, link
    other = context.browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    other.goto(app_url + "/?" + link.split("?", 1)[1] + "&page=candidate")
    expect(other.get_by_role("heading", name="Candidate").first).to_be_visible()
    expect(other.get_by_role("heading", name=f"Trial {number} ").first).to_be_visible()
    expect(other.get_by_text("Accuracy (deployed)")).to_be_visible()
    other.wait_for_timeout(1500)  # let the charts and tables finish drawing before the screenshot
    other.screenshot(path=str(tmp_path / "screens" / "10-deep-link.png"), full_page=True)
    other.context.close()

    page.get_by_role("link", name="Pareto front").first.click()
    _open_candidate(page, "Click a point to open it.", '[data-testid="stPlotlyChart"] g.points path', _centre)
    expect(page.get_by_text("Against the budgets")).to_be_visible()
    expect(page.get_by_text("Accuracy (deployed)")).to_be_visible()
    shot("11-candidate")

    page.get_by_role("link", name="Export").first.click()
    button = page.get_by_role("button", name="Download TFLM bundle")
    expect(button).to_be_visible(timeout=180_000)
    shot("12-export")
    with page.expect_download() as download_info:
        button.click()
    download_info.value.save_as(tmp_path / "bundle.zip")


def test_search_front_select_download(app_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    local, shared = _screens(tmp_path)
    shots: list[Path] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(60_000)

        def shot(name: str) -> None:
            page.wait_for_timeout(800)
            path = local / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            shots.append(path)

        try:
            _drive(page, app_url, shot, tmp_path, context)
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
    assert len(shots) == 11 and (local / "10-deep-link.png").is_file()
    if shared is not None:
        for path in shots:
            shutil.copy2(path, shared / path.name)
