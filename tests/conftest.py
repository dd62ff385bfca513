"""Shared fixtures: sockets blocked for unit tests, a small corpus, spec builders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pytest_socket import disable_socket, enable_socket

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_SPEC = REPO / "examples" / "home-buying" / "spec.yaml"


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest) -> Any:
    """Unit tests may not open network sockets (unix sockets stay allowed for asyncio)."""
    if request.node.get_closest_marker("integration") is None:
        disable_socket(allow_unix_socket=True)
    yield
    enable_socket()


CORPUS = {
    "deposits.md": (
        "# Deposits\n\n"
        "Most lenders ask for a deposit of at least five percent of the property price. "
        "A bigger deposit usually gets you a lower interest rate on the mortgage.\n\n"
        "Shift workers may need to show several months of payslips so lenders count overtime pay.\n"
    ),
    "costs.md": (
        "# Costs\n\n"
        "Solicitor fees usually cost between one and two thousand pounds for a purchase. "
        "A survey of the property costs between four hundred and fifteen hundred pounds.\n\n"
        "First-time buyers often pay a reduced property purchase tax below a price threshold.\n"
    ),
}


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    """A directory with two small markdown documents."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in CORPUS.items():
        (docs / name).write_text(text, encoding="utf-8")
    return docs


@pytest.fixture
def make_spec(corpus_dir: Path) -> Any:
    """Build a spec mapping over the corpus, with overrides merged in."""

    def build(**overrides: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "persona": {
                "name": "Maya",
                "description": "First-time home buyer and nurse on shifts.",
                "expertise": "novice",
                "goals": ["buy a flat"],
                "custom_questions": [],
            },
            # The judges' self-test has tests of its own (test_selftest.py); here it would
            # consume scripted judges' answers meant for the pairs.
            "goal": {"name": "qa", "params": {"num_questions": 3, "selftest": False}},
            "data": [{"path": str(corpus_dir)}],
            "run": {"max_iterations": 2, "max_concurrency": 4},
            "llm": {"provider": "fake"},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(spec.get(key), dict):
                params = {**spec[key].get("params", {}), **value.get("params", {})}
                spec[key] = {**spec[key], **value}
                if key == "goal" and params and value.get("name", "qa") == "qa":
                    spec[key]["params"] = params
            else:
                spec[key] = value
        return spec

    return build
