"""Money beside tokens: the price table, the spec's override, local models, and the bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import personagen
from personagen.errors import SpecError
from personagen.llm.pricing import add_costs, price_for, table_price
from personagen.specfile import parse_spec
from personagen.state.spec import LLMSettings


@pytest.mark.parametrize(
    ("model", "price"),
    [
        ("gpt-4o-mini", (0.15, 0.60)),
        ("gpt-4o-mini-2024-07-18", (0.15, 0.60)),
        ("openai/gpt-4o", (2.50, 10.00)),
        ("GPT-4.1-nano", (0.10, 0.40)),
        ("o4-mini", (1.10, 4.40)),
        ("gpt-4o-2024-05-13", None),  # an older, dearer snapshot: unknown, not mispriced
        ("gpt-4o-mini-tts", None),
        ("llama3.1:8b", None),
    ],
)
def test_the_table_knows_aliases_and_snapshots_only(model: str, price: Any) -> None:
    found = table_price(model)
    assert (None if found is None else (found.input, found.output)) == price


def test_a_million_tokens_cost_the_listed_price() -> None:
    price = table_price("gpt-4o-mini")
    assert price is not None
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(0.75)
    assert price.cost(2000, 500) == pytest.approx(0.0006)


@pytest.mark.parametrize(
    ("settings", "source", "cost"),
    [
        ({"provider": "embedded"}, "local", 0.0),
        ({"provider": "fake"}, "local", 0.0),
        ({"provider": "openai", "base_url": "http://127.0.0.1:8080/v1"}, "local", 0.0),
        (
            {"provider": "openai", "base_url": "http://localhost:11434/v1", "model": "gpt-4o"},
            "local",
            0.0,
        ),
        ({"provider": "openai"}, "price table", 0.75),  # the default model, gpt-4o-mini
        ({"provider": "openai", "model": "gpt-4.1"}, "price table", 10.0),
        (
            {"provider": "openai", "model": "gpt-4.1", "price": {"input": 1, "output": 2}},
            "llm.price",
            3.0,
        ),
        (
            {"provider": "openai", "base_url": "https://llm.example.org/v1", "model": "mixtral"},
            None,
            None,
        ),
    ],
)
def test_price_for_settings(
    settings: dict[str, Any], source: str | None, cost: float | None
) -> None:
    price = price_for(LLMSettings(**settings))
    if source is None:
        assert price is None
        return
    assert price is not None and price.source.startswith(source)
    assert price.cost(1_000_000, 1_000_000) == pytest.approx(cost)


@pytest.mark.parametrize("bad", [{"input": -1, "output": 1}, {"input": 1}, {"in": 1, "out": 2}])
def test_a_bad_price_in_the_spec_names_the_key(bad: dict[str, Any], corpus_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"llm\.price"):
        parse_spec(
            {
                "persona": "A nurse",
                "data": [{"path": str(corpus_dir)}],
                "llm": {"provider": "openai", "price": bad},
            }
        )


def test_usage_gets_cost_per_model_and_in_total() -> None:
    usage = {
        "totals": {"input_tokens": 3_000_000, "output_tokens": 1_000_000},
        "per_model": {
            "gpt-4o-mini": {"input_tokens": 2_000_000, "output_tokens": 1_000_000},
            "gpt-4.1": {"input_tokens": 1_000_000, "output_tokens": 0},
        },
    }
    add_costs(usage, LLMSettings(provider="openai"))
    assert usage["per_model"]["gpt-4o-mini"]["cost_usd"] == pytest.approx(0.9)
    assert usage["per_model"]["gpt-4.1"]["cost_usd"] == pytest.approx(2.0)
    assert usage["totals"]["cost_usd"] == pytest.approx(2.9)
    assert usage["totals"]["cost"] == "$2.90"
    assert usage["pricing"]["gpt-4.1"]["source"].startswith("price table")


def test_an_unknown_hosted_model_has_no_cost_not_a_guess() -> None:
    usage = {"totals": {"input_tokens": 10}, "per_model": {"mixtral": {"input_tokens": 10}}}
    add_costs(
        usage, LLMSettings(provider="openai", base_url="https://x.example/v1", model="mixtral")
    )
    assert usage["totals"]["cost_usd"] is None
    assert "llm.price" in usage["totals"]["cost"]


def test_the_bundle_report_and_estimate_show_money(tmp_path: Path, make_spec: Any) -> None:
    from personagen.llm.fake import FakeChatModel

    spec = make_spec(
        llm={"provider": "fake", "model": "fake-chat", "price": {"input": 2, "output": 8}}
    )
    result = personagen.run(
        spec, chat_model=FakeChatModel(), out_dir=tmp_path / "out", state_dir=tmp_path / "st"
    )
    assert result.bundle_dir is not None
    usage = json.loads((result.bundle_dir / "metadata.json").read_text())["usage"]
    totals = usage["totals"]
    expected = (totals["input_tokens"] * 2 + totals["output_tokens"] * 8) / 1e6
    assert totals["cost_usd"] == pytest.approx(expected, abs=1e-6) and expected > 0
    assert usage["pricing"] and all(p["source"] == "llm.price" for p in usage["pricing"].values())
    report = (result.bundle_dir / "report.html").read_text()
    assert f"<dt>cost</dt><dd>{totals['cost']}</dd>" in report

    from personagen.estimate import estimate_run

    guess = estimate_run(parse_spec(spec), characters=2000, documents=2)
    assert guess.low["cost_usd"] == pytest.approx(
        (guess.low["input_tokens"] * 2 + guess.low["output_tokens"] * 8) / 1e6
    )
    assert any("llm.price" in line for line in guess.assumptions)
