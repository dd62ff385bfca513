"""How a run ended, for people and scripts: did it produce anything, and if not, why.

A run can reach its end and still have produced nothing because the model's output never
parsed (a server that ignores the JSON instruction, a model too small for the schema).
That is a failure of the model or endpoint, not an empty result: `unparsed_failure` turns
the run's parse-failure events into one line naming the model, the endpoint and what could
not be parsed, and the run ends `failed`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

_PARSE_FAILURE = re.compile(r"could not parse (?P<schema>\w+) from model output \((?P<why>.*)")


def produced_anything(
    pairs: Mapping[str, Any], summary: Any | None, rewrites: Mapping[str, Any]
) -> bool:
    """Whether the run has accepted output: a pair, the summary, or a rewritten unit."""
    if any(getattr(p, "status", None) == "accepted" for p in pairs.values()):
        return True
    if summary is not None and getattr(summary, "status", None) == "accepted":
        return True
    return any(getattr(r, "status", None) == "accepted" for r in rewrites.values())


def model_label(llm: Any, chat_model: Any | None = None) -> str:
    """`model NAME at URL` (or `(provider)`) for the run's model settings."""
    if chat_model is not None:
        name = getattr(chat_model, "model_name", None) or type(chat_model).__name__
        return f"model {name} (given in Python)"
    name = (
        llm.model
        or llm.model_path
        or {"embedded": "SmolLM2-135M (embedded default)"}.get(llm.provider, llm.provider)
    )
    where = f"at {llm.base_url}" if llm.base_url else f"({llm.provider})"
    return f"model {name} {where}"


def unparsed_failure(
    events: Iterable[Any],
    *,
    produced: bool,
    has_items: bool,
    label: str,
) -> str | None:
    """One line when the run produced nothing because model output never parsed, else None.

    Args:
        events: the run's events (warnings name `could not parse <Schema> from model output`).
        produced: whether the run accepted anything (then it did not fail).
        has_items: whether any item got as far as an answer or an output to judge.
        label: the model and endpoint, from `model_label`.
    """
    if produced:
        return None
    failures: Counter[str] = Counter()
    first: dict[str, str] = {}
    for event in events:
        message = str(getattr(event, "message", ""))
        found = _PARSE_FAILURE.search(message)
        if found is None:
            continue
        schema = found["schema"]
        failures[schema] += 1
        first.setdefault(schema, found["why"].replace("\n", " ")[:160])
    if not failures:
        return None
    if has_items and sum(failures.values()) < 3:
        return None  # a stray failure on a run whose items were judged: an empty result
    schema, count = failures.most_common(1)[0]
    others = sum(failures.values()) - count
    more = f" (and {others} more of other schemas)" if others else ""
    return (
        f"{label}: {count} structured output(s) for {schema} could not be parsed{more}, "
        f"so the run produced nothing: {first[schema]}"
    )
