"""Faithfulness and context precision with fewer judge calls than Ragas makes.

Ragas' faithfulness asks the model to split the answer into statements (one call), then
checks them (a second call); its context precision makes one call per retrieved context.
Here:

- faithfulness: the answer's sentences are its statements (split without a model, the same
  claims `grounding` checks), and Ragas' own NLI prompt checks them all in one call;
- context precision: one call judges every context at once (a verdict list, exactly one
  verdict per context), scored with Ragas' formula (average precision of the verdicts).

The judges' self-test measures these exactly as it measured Ragas' versions; the quality
benchmark (`benchmarks/quality.py`) compares both.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from personagen.evaluators.ragas_metrics import MetricScore, _ragas, bounded_response_model
from personagen.llm._text import sentences
from personagen.llm.client import LLMClient
from personagen.prompts.library import render, shared_prompt

__all__ = ["context_precision", "faithfulness"]


class ContextVerdict(BaseModel):
    """Whether one passage was useful to arrive at the answer."""

    reason: str = Field(description="Why, in one short sentence.", max_length=200)
    verdict: Literal[0, 1] = Field(description="1 if the passage was useful, else 0.")


class ContextVerdictsOut(BaseModel):
    """One verdict per passage, in the passages' order."""

    verdicts: list[ContextVerdict]


@cache
def _verdicts_schema(n: int) -> type[ContextVerdictsOut]:
    return create_model(
        "ContextVerdictsOut",
        __base__=ContextVerdictsOut,
        verdicts=(
            list[ContextVerdict],
            Field(description="One verdict per passage, in order.", min_length=n, max_length=n),
        ),
    )


def average_precision(verdicts: Sequence[int]) -> float:
    """Ragas' context precision: precision@k averaged over the useful positions."""
    useful = sum(verdicts)
    if not useful:
        return 0.0
    hits = 0
    total = 0.0
    for k, verdict in enumerate(verdicts, start=1):
        if verdict:
            hits += 1
            total += hits / k
    return total / useful


async def context_precision(
    client: LLMClient, *, question: str, answer: str, contexts: list[str]
) -> MetricScore:
    """Judge every context in one call; Ragas' average-precision score of the verdicts."""
    if not contexts:
        return MetricScore(None, "context_precision: no context was retrieved")
    messages = render(
        shared_prompt("context_usefulness"),
        embedded=client.small_model,
        question=question,
        answer=answer,
        contexts=contexts,
    )
    out = await client.structured(messages, _verdicts_schema(len(contexts)))
    verdicts = [v.verdict for v in out.verdicts]
    value = round(average_precision(verdicts), 4)
    return MetricScore(
        value, f"useful contexts: {sum(verdicts)} of {len(verdicts)}, precision {value:.2f}"
    )


@cache
def _nli() -> tuple[Any, Any, Any]:
    _ragas()  # telemetry off first
    from ragas.metrics.collections.faithfulness.util import (
        NLIStatementInput,
        NLIStatementOutput,
        NLIStatementPrompt,
    )

    return NLIStatementPrompt(), NLIStatementInput, bounded_response_model(NLIStatementOutput)


@cache
def _nli_output(n: int) -> Any:
    """Ragas' NLI output with exactly `n` verdicts: one per statement we sent, no more."""
    _, _, output = _nli()
    item = typing.get_args(output.model_fields["statements"].annotation)[0]
    return create_model(
        output.__name__,
        __base__=output,
        statements=(list[item], Field(min_length=n, max_length=n)),  # type: ignore[valid-type]
    )


async def faithfulness(client: LLMClient, *, answer: str, contexts: list[str]) -> MetricScore:
    """Share of the answer's sentences the contexts support, checked in one NLI call."""
    statements = [s for s in sentences(answer) if s.strip()] or [answer.strip()]
    prompt, input_type, _ = _nli()
    text = prompt.to_string(input_type(context="\n".join(contexts), statements=statements))
    from langchain_core.messages import HumanMessage

    # A tiny judge invents statements of its own; the schema holds it to ours.
    out = await client.structured([HumanMessage(content=text)], _nli_output(len(statements)))
    if not out.statements:
        return MetricScore(None, "faithfulness: the judge returned no verdict")
    supported = sum(1 for s in out.statements if s.verdict)
    value = round(supported / len(out.statements), 4)
    return MetricScore(
        value, f"{supported} of {len(out.statements)} statement(s) supported by the contexts"
    )
