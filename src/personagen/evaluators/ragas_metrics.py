"""Ragas metrics (faithfulness, answer relevancy, context precision) through our LLM client.

Ragas' collections metrics take an `InstructorBaseRagasLLM`; the adapter here sends each of
their structured requests through `LLMClient.structured`, so Ragas' calls get our retries,
JSON repair, grammar-constrained decoding on the embedded model, and token accounting.
Ragas is imported lazily (it costs seconds) and its telemetry is switched off first.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

from langchain_core.embeddings import Embeddings
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, create_model

from personagen.errors import BudgetExhausted
from personagen.llm.client import LLMClient, is_transient

RAGAS_METRICS = ("faithfulness", "answer_relevancy", "context_precision")


@cache
def _ragas() -> Any:
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # every metric call would post telemetry
    from ragas.embeddings.base import BaseRagasEmbedding
    from ragas.llms.base import InstructorBaseRagasLLM
    from ragas.metrics import collections

    return InstructorBaseRagasLLM, BaseRagasEmbedding, collections


@cache
def _ragas_prompt_base() -> Any:
    _ragas()  # telemetry off first
    from ragas.prompt.metrics.base_prompt import BasePrompt

    return BasePrompt


@cache
def _adapter_classes() -> tuple[type, type]:
    base_llm, base_embedding, _ = _ragas()

    class ClientRagasLLM(base_llm):  # type: ignore[misc, valid-type]
        """Ragas LLM interface over `LLMClient.structured`."""

        def __init__(self, client: LLMClient) -> None:
            self.client = client

        async def agenerate(self, prompt: str, response_model: Any) -> Any:
            return await self.client.structured(
                [HumanMessage(content=prompt)], bounded_response_model(response_model)
            )

        def generate(self, prompt: str, response_model: Any) -> Any:
            return asyncio.run(self.agenerate(prompt, response_model))

    class LangChainRagasEmbedding(base_embedding):  # type: ignore[misc, valid-type]
        """Ragas embedding interface over LangChain `Embeddings`."""

        def __init__(self, client: LLMClient, embeddings: Embeddings) -> None:
            super().__init__()
            self.client = client  # its slots bound embedding calls like model calls
            self.embeddings = embeddings

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embeddings.embed_query(text)

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            async with self.client.slot():
                return await self.embeddings.aembed_query(text)

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self.embeddings.embed_documents(texts)

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            async with self.client.slot():
                return await self.embeddings.aembed_documents(texts)

    return ClientRagasLLM, LangChainRagasEmbedding


# Ragas declares its binary verdicts as plain `int` ("the verdict(0/1)"); a judge that
# answers 2 then yields a context precision of 1.33 or 254.6. These fields may only be 0 or 1.
_BINARY_FIELDS = frozenset({"verdict", "noncommittal"})


@cache
def bounded_response_model(model: Any) -> Any:
    """`model` with every binary verdict field typed `Literal[0, 1]`, nested models included.

    Structured decoding then only allows legal verdicts (grammars, JSON schemas), and an
    out-of-range answer fails validation (repaired, re-asked, then an error on the item),
    instead of flowing into a score.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return model
    overrides: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if name in _BINARY_FIELDS and annotation is int:
            overrides[name] = (Literal[0, 1], field)
            continue
        bounded = _bounded_annotation(annotation)
        if bounded is not annotation:
            overrides[name] = (bounded, field)
    if not overrides:
        return model
    return create_model(model.__name__, __base__=model, **overrides)


def _bounded_annotation(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return bounded_response_model(annotation)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (Any,)
        bounded = _bounded_annotation(item)
        return annotation if bounded is item else list[bounded]  # type: ignore[valid-type]
    return annotation


@dataclass
class MetricScore:
    """A metric's value for one pair, in [0, 1], or why it could not be computed."""

    value: float | None
    reason: str

    def __post_init__(self) -> None:
        if self.value is not None and not (0.0 <= self.value <= 1.0):
            # A score outside [0, 1] is a judge's malfunction, never a score.
            self.reason = f"out-of-range value {self.value!r} ({self.reason})"
            self.value = None


class RagasJudge:
    """The Ragas metrics a goal asks for, bound to one client."""

    def __init__(self, client: LLMClient, *, relevancy_strictness: int = 1) -> None:
        llm_cls, emb_cls = _adapter_classes()
        _, _, collections = _ragas()
        llm = llm_cls(client)
        self._metrics: dict[str, Any] = {
            "faithfulness": collections.Faithfulness(llm=llm),
            "context_precision": collections.ContextPrecisionWithoutReference(llm=llm),
        }
        if client.embeddings is not None:
            self._metrics["answer_relevancy"] = collections.AnswerRelevancy(
                llm=llm,
                embeddings=emb_cls(client, client.embeddings),
                strictness=relevancy_strictness,
            )

        for metric in self._metrics.values():
            for prompt in vars(metric).values():
                _memoize_static_parts(prompt)

    async def score(
        self, metric: str, *, question: str, answer: str, contexts: list[str]
    ) -> MetricScore:
        """Score one pair on one metric. Failures become a None value with the reason."""
        implementation = self._metrics.get(metric)
        if implementation is None:
            return MetricScore(None, f"{metric} needs an embedding model; none is configured")
        kwargs: dict[str, Any] = {"user_input": question, "response": answer}
        if metric != "answer_relevancy":
            kwargs["retrieved_contexts"] = contexts
        try:
            result = await implementation.ascore(**kwargs)
        except Exception as exc:  # noqa: BLE001 - reported per item, never dropped
            if isinstance(exc, BudgetExhausted) or is_transient(exc):
                raise  # the run stops (resumable) rather than failing every item
            return MetricScore(None, f"{metric} could not be computed: {exc}")
        value = float(result.value)
        if 1.0 < value <= 1.0 + 1e-9 or -1e-9 <= value < 0.0:
            value = min(max(value, 0.0), 1.0)  # floating-point noise of a cosine or a mean
        if math.isnan(value):
            return MetricScore(None, f"{metric}: the judge found no statement to check")
        if metric == "answer_relevancy" and -1.0 <= value < 0.0:
            # A cosine below 0: the regenerated questions point away from the question.
            return MetricScore(0.0, f"{metric}: {value:.2f} (negative similarity) counts as 0")
        if not 0.0 <= value <= 1.0:
            return MetricScore(
                None, f"{metric} could not be computed: value {value!r} is not in [0, 1]"
            )
        return MetricScore(round(value, 4), _explain(metric, value))


def _explain(metric: str, value: float) -> str:
    return {
        "faithfulness": f"{value:.0%} of the answer's statements are supported by the contexts",
        "answer_relevancy": (
            f"questions regenerated from the answer match the question at {value:.2f}"
        ),
        "context_precision": f"retrieved contexts useful for the answer: precision {value:.2f}",
    }.get(metric, f"{metric} = {value:.2f}")


def _memoize_static_parts(prompt: Any) -> None:
    """Render a Ragas prompt's fixed parts (output JSON schema, examples) once, not per call.

    `BasePrompt.to_string` rebuilds the schema and the examples on every call (~0.5 ms, the
    largest share of a judge call's CPU). The replacement renders the same text from the
    cached parts; its first output is compared with Ragas' own and it steps aside for good
    if they differ (a Ragas version that formats prompts otherwise).
    """
    base_prompt = _ragas_prompt_base()
    if not isinstance(prompt, base_prompt) or type(prompt).to_string is not base_prompt.to_string:
        return
    schema = json.dumps(prompt.output_model.model_json_schema())
    examples = prompt._generate_examples()
    original = prompt.to_string
    verified = False

    def to_string(data: Any) -> str:
        nonlocal verified
        text = (
            f"{prompt.instruction}\n"
            "Please return the output in a JSON format that complies with the following "
            f"schema as specified in JSON Schema:\n{schema}Do not use single quotes in your "
            "response but double quotes,properly escaped with a backslash.\n\n"
            f"{examples}\n-----------------------------\n\n"
            "Now perform the same with the following input\n"
            f"input: {data.model_dump_json(indent=4, exclude_none=True)}\nOutput: "
        )
        if not verified:
            expected = original(data)
            if text != expected:
                prompt.to_string = original
                return str(expected)
            verified = True
        return text

    prompt.to_string = to_string
