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
