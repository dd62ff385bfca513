"""report.html in a real headless Chromium: the plots render, and the page fetches nothing.

Chromium comes from Debian (`.ci/chromium.sh` installs it); without /usr/bin/chromium the
tests skip with the reason shown. Chromium's own DNS is mapped to nowhere and its proxy to a
closed local port, so nothing can leave the machine whatever the page or the browser tries;
the net log then shows whether the *page* asked for anything.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup

from personagen.store.report import write_report, write_report_from_bundle

from ..unit.test_report import EVIL, _inputs
from ..unit.test_run_store import drive_fake_run

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.is_file():
    pytest.skip(
        "/usr/bin/chromium is missing (run .ci/chromium.sh to install Debian's chromium)",
        allow_module_level=True,
    )

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    # Fail closed: no name resolves and every proxied request goes to a closed local port.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
]


def dump_dom(page: Path, tmp_path: Path) -> tuple[BeautifulSoup, list[dict[str, Any]]]:
    """Load `page` in headless Chromium; return the rendered DOM and the page's requests."""
    netlog = tmp_path / "netlog.json"
    result = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--log-net-log={netlog}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,  # an alert() from unescaped text would hang it: fail
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<html" in result.stdout, result.stderr[-2000:]
    return BeautifulSoup(result.stdout, "html.parser"), page_requests(netlog)


def page_requests(netlog: Path) -> list[dict[str, Any]]:
    """URL requests the page started (Chromium's own background requests have no origin)."""
    log = json.loads(netlog.read_text())
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    requests = []
    for event in log["events"]:
        params = event.get("params") or {}
        if types.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
            continue
        if params.get("initiator") == "not an origin":
            continue  # the browser's own update/time checks, not the page
        requests.append(params)
    return requests


def assert_offline_page(soup: BeautifulSoup, requests: list[dict[str, Any]]) -> None:
    remote = [r["url"] for r in requests if not r["url"].startswith(("file:", "data:"))]
    assert remote == [], remote
    for tag in soup.find_all(True):
        for attr in ("src", "href", "xlink:href", "srcset", "action", "poster", "data"):
            value = tag.get(attr)
            assert value is None or str(value).startswith("#"), (tag.name, attr, value)


def assert_plots_rendered(soup: BeautifulSoup, metrics: int) -> None:
    scores = soup.find(id="plot-scores")
    assert scores is not None
    charts = scores.find_all("svg", class_="plot-score")
    assert len(charts) == metrics
    for chart in charts:
        assert chart.find("polyline", class_="series") is not None
        assert chart.find_all("circle", class_="point")
    assert any(c.find("line", class_="baseline") is not None for c in charts)
    for plot_id in ("plot-tokens", "plot-time"):
        svg = soup.find("svg", id=plot_id)
        assert svg is not None and svg.find_all("rect", class_="bar"), plot_id


def test_report_of_a_real_run_renders_offline(tmp_path: Path) -> None:
    run = drive_fake_run(tmp_path / "run")
    page = write_report_from_bundle(run.bundle_dir)
    soup, requests = dump_dom(page, tmp_path)
    metrics = {m for r in run.metadata["scores_per_iteration"] for m in r["scores"]}
    assert_plots_rendered(soup, len(metrics))
    assert_offline_page(soup, requests)
    for section in ("persona", "goal", "constraints", "data", "pairs", "rejected", "warnings"):
        assert soup.find("section", id=section) is not None, section
    assert len(soup.select("#pairs article.pair")) == run.metadata["counts"]["accepted"]


def test_hostile_text_stays_text_in_the_browser(tmp_path: Path) -> None:
    page = write_report(tmp_path / "bundle", **_inputs())
    soup, requests = dump_dom(page, tmp_path)
    assert soup.find("script") is None and soup.find("img") is None
    assert EVIL in soup.get_text() and "tracker.example" in soup.get_text()
    assert_plots_rendered(soup, 2)
    assert_offline_page(soup, requests)


def test_the_net_log_sees_page_requests(tmp_path: Path) -> None:
    # The check above would be empty if the net log missed page requests: show it does not.
    page = tmp_path / "leaky.html"
    # (No onerror here: an alert() would block headless Chromium until the timeout.)
    image = '<img src="https://tracker.example/p.png">'
    page.write_text(f"<!DOCTYPE html><html><body><p>x</p>{image}</body></html>")
    _, requests = dump_dom(page, tmp_path)
    assert [r["url"] for r in requests] == ["https://tracker.example/p.png"]


SCREEN = (1280, 800)
"""The first screen: a laptop browser window."""


def _screenshot(page: Path, tmp_path: Path) -> Path:
    shot = tmp_path / "first-screen.png"
    result = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            "--hide-scrollbars",
            f"--window-size={SCREEN[0]},{SCREEN[1]}",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    return shot


def _measure(page: Path, tmp_path: Path) -> dict[str, Any]:
    """Layout facts from the browser: where the first pair starts, what the filters show.

    The report runs no script (its CSP forbids it); a copy without the CSP, plus a script
    that writes its measurements into the DOM, lets `--dump-dom` read the layout, then
    checks the CSS-only filters as a click on their labels would.
    """
    probe = tmp_path / "probe.html"
    text = page.read_text(encoding="utf-8").replace("Content-Security-Policy", "x-no-csp", 1)
    measure = """<script>
      const shown = () => [...document.querySelectorAll('#pairs article.pair')]
        .filter(a => getComputedStyle(a).display !== 'none');
      const facts = {top: document.querySelector('#pairs article.pair')
        .getBoundingClientRect().top, all: shown().length};
      document.getElementById('p-min-90').checked = true;
      facts.min90 = shown().length;
      document.getElementById('p-min-0').checked = true;
      document.getElementById('p-sort-low').checked = true;
      facts.low_first = shown().sort((a, b) => a.getBoundingClientRect().top
        - b.getBoundingClientRect().top).map(a => a.id.slice(5));
      document.body.dataset.facts = JSON.stringify(facts);
    </script>"""
    probe.write_text(text.replace("</body>", measure + "</body>"), encoding="utf-8")
    result = subprocess.run(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile-probe'}",
            f"--window-size={SCREEN[0]},{SCREEN[1]}",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    soup = BeautifulSoup(result.stdout, "html.parser")
    assert soup.body is not None and soup.body.get("data-facts"), result.stderr[-2000:]
    facts: dict[str, Any] = json.loads(str(soup.body["data-facts"]))
    return facts


def test_the_first_screen_shows_pairs(tmp_path: Path) -> None:
    from PIL import Image

    run = drive_fake_run(tmp_path / "run")
    assert run.metadata["counts"]["accepted"] >= 1
    page = write_report_from_bundle(run.bundle_dir)
    shot = _screenshot(page, tmp_path)
    # The pairs' quoted source spans are highlighted (#fff1a8): that colour on the first
    # screen means a pair with its evidence is in view without scrolling.
    image = Image.open(shot).convert("RGB")
    assert image.size == SCREEN
    highlight = sum(
        1
        for pixel in image.getdata()
        if abs(pixel[0] - 0xFF) < 4 and abs(pixel[1] - 0xF1) < 4 and abs(pixel[2] - 0xA8) < 4
    )
    assert highlight > 200, f"no highlighted span on the first screen ({shot})"
    facts = _measure(page, tmp_path)
    assert facts["top"] < SCREEN[1] * 0.6, facts
    accepted = [p for p in run.pairs if p.status == "accepted"]
    assert facts["all"] == len(accepted)
    weakest = {p.id: min(p.scores.values()) for p in accepted}
    assert facts["min90"] == sum(1 for v in weakest.values() if v >= 0.9)
    lows = [weakest[pid] for pid in facts["low_first"]]
    assert lows == sorted(lows), facts
