"""What model calls cost in money: a small price table for well-known hosted models.

Prices are USD per million tokens, as published by OpenAI (checked on the date in
`PRICES_AS_OF`; they change: override any model with `llm.price: {input: .., output: ..}` in
the spec). Models run on this machine or on a server on localhost (`provider: embedded`,
`fake`, or an OpenAI-compatible `base_url` on a loopback host) cost nothing: their cost is
0 and is shown as "local". A hosted model that is neither in the table nor priced in the spec
has an unknown cost (`None`), never a guessed one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from personagen.state.spec import LLMSettings

PRICES_AS_OF = "2025-08-01"

# USD per 1M tokens (input, output), standard tier, no cached-input discount.
_TABLE: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o1": (15.00, 60.00),
    "o3": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "text-embedding-3-small": (0.02, 0.0),
    "text-embedding-3-large": (0.13, 0.0),
}
# Dated snapshots priced like their alias. Older snapshots are left out on purpose (e.g.
# gpt-4o-2024-05-13 cost twice as much as gpt-4o does): they are "unknown", not mispriced.
_SNAPSHOTS: dict[str, str] = {
    "gpt-4o-2024-08-06": "gpt-4o",
    "gpt-4o-2024-11-20": "gpt-4o",
    "gpt-4o-mini-2024-07-18": "gpt-4o-mini",
    "gpt-4.1-2025-04-14": "gpt-4.1",
    "gpt-4.1-mini-2025-04-14": "gpt-4.1-mini",
    "gpt-4.1-nano-2025-04-14": "gpt-4.1-nano",
    "o1-2024-12-17": "o1",
    "o3-2025-04-16": "o3",
    "o3-mini-2025-01-31": "o3-mini",
    "o4-mini-2025-04-16": "o4-mini",
}
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}  # noqa: S104 - a host name, not a bind
_PROVIDER_PREFIX = re.compile(r"^(openai/|azure/)", re.I)


@dataclass(frozen=True)
class Price:
    """USD per 1M input and output tokens, and where the figure comes from."""

    input: float
    output: float
    source: str
    """`llm.price` (the spec), `price table <date>`, or `local`."""

    @property
    def local(self) -> bool:
        """The model runs locally: it costs nothing."""
        return self.source == "local"

    def cost(self, input_tokens: float, output_tokens: float) -> float:
        """USD for this many tokens."""
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


def table_price(model: str) -> Price | None:
    """The price table's entry for `model` (an alias, a dated snapshot, `openai/<model>`)."""
    name = _PROVIDER_PREFIX.sub("", model.strip()).lower()
    name = _SNAPSHOTS.get(name, name)
    found = _TABLE.get(name)
    return Price(*found, source=f"price table {PRICES_AS_OF}") if found else None


def is_local(settings: LLMSettings) -> bool:
    """The model runs in this process or on a loopback server."""
    if settings.provider in ("embedded", "fake"):
        return True
    host = urlparse(settings.base_url).hostname if settings.base_url else None
    return host is not None and host.lower() in _LOOPBACK


def price_for(settings: LLMSettings, model: str | None = None) -> Price | None:
    """The price of `settings`' model (or `model`): the spec's, local (0), the table's, or None."""
    if settings.price is not None:
        return Price(settings.price.input, settings.price.output, source="llm.price")
    if is_local(settings):
        return Price(0.0, 0.0, source="local")
    name = model or settings.model or ("gpt-4o-mini" if settings.provider == "openai" else "")
    return table_price(name) if name else None


def format_usd(cost: float | None) -> str:
    """`$0.0123` (4 decimals under a dollar), `$12.50`, or `cost unknown`."""
    if cost is None:
        return "cost unknown"
    return f"${cost:,.4f}" if cost < 1 else f"${cost:,.2f}"


def cost_label(cost: float | None, *, local: bool = False) -> str:
    """`$0.0123`, `local ($0)` or `unknown (...)` for the summary, the CLI and the report."""
    if local:
        return "local ($0)"
    if cost is None:
        return "unknown (no price for the model: set llm.price)"
    return format_usd(cost)


def _settings_by_model(settings: LLMSettings) -> list[LLMSettings]:
    """The run's model settings, then any other model settings the spec holds (a judge)."""
    found = [settings]
    for value in settings.__dict__.values():
        if isinstance(value, LLMSettings):
            found.append(value)
    return found


def add_costs(usage: dict[str, Any], settings: LLMSettings) -> dict[str, Any]:
    """`usage` (see `store.bundle.usage_summary`) with money beside the tokens.

    Each `per_model` row gets `cost_usd`; `totals` gets `cost_usd` (None when any model's
    price is unknown) and `cost` (a label); `pricing` says which price each model got.
    A model name is priced by the settings it was configured with (so `llm.price` applies
    to it), or from the table.
    """
    configured = _settings_by_model(settings)
    pricing: dict[str, Any] = {}
    total: float | None = 0.0
    all_local = True
    per_model = usage.get("per_model") or {}
    for name, row in per_model.items():
        # A model named in the settings gets their price; any other name is the run's own
        # model as reported (a GGUF file name, a server's model id) or a table entry.
        match = next((s for s in configured if s.model and s.model == name), settings)
        price = price_for(match, name)
        if price is None:
            row["cost_usd"] = None
            total = None
            all_local = False
            pricing[name] = {"source": "unknown"}
            continue
        cost = price.cost(row.get("input_tokens", 0), row.get("output_tokens", 0))
        row["cost_usd"] = round(cost, 6)
        all_local = all_local and price.local
        pricing[name] = {"input": price.input, "output": price.output, "source": price.source}
        if total is not None:
            total += cost
    totals = usage.setdefault("totals", {})
    if len(per_model) == 1 and total is not None:
        # Totals count work a crash or a budget stop lost too: price them, not the rows.
        (only,) = pricing.values()
        total = (
            totals.get("input_tokens", 0) * only.get("input", 0)
            + totals.get("output_tokens", 0) * only.get("output", 0)
        ) / 1_000_000
    if not per_model:
        price = price_for(settings)
        all_local = price is not None and price.local
        total = None
        if price is not None:
            total = price.cost(totals.get("input_tokens", 0), totals.get("output_tokens", 0))
    totals["cost_usd"] = None if total is None else round(total, 6)
    totals["cost"] = cost_label(total, local=all_local)
    usage["pricing"] = pricing
    return usage
