"""`LLMClient`: the one way nodes and evaluators call a chat model.

It adds what LangChain models leave to the caller: retries with backoff on timeouts, 429s and
5xx (counted per node), structured output that works on every OpenAI-compatible server
(native schema modes where supported, prompt-and-parse elsewhere), and repair of malformed
JSON before the error is reported with the raw output.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from json_repair import repair_json
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.output_parsers import BaseLLMOutputParser
from langchain_core.outputs import ChatGeneration
from langchain_core.runnables import RunnableBinding, RunnableSequence
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from personagen.errors import BudgetExhausted, LLMError, StructuredOutputError
from personagen.llm.usage import current_scope

T = TypeVar("T", bound=BaseModel)
StructuredMethod = Literal["native", "json_schema", "function_calling", "json_mode", "prompt"]


class TransientLLMError(LLMError):
    """A failure worth retrying (fake models raise it to simulate timeouts and 429s)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call should be retried: timeouts, connection errors, 429, 5xx."""
    if isinstance(exc, BudgetExhausted):
        return False
    if isinstance(exc, TransientLLMError | TimeoutError | ConnectionError):
        return True
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on openai
        return False
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


@dataclass
class LLMClient:
    """A chat model plus how to get structured output from it and how hard to retry.

    Attributes:
        chat: the LangChain chat model.
        model_name: reported in metadata.
        method: how structured output is obtained.
        small_model: use the prompts' `embedded` variants (tiny local models).
        max_retries: retries after the first attempt on transient errors.
        parse_attempts: model calls allowed to get parseable structured output.
        embeddings: embeddings for answer relevancy and dedup, if any.
    """

    chat: BaseChatModel
    model_name: str
    method: StructuredMethod = "native"
    small_model: bool = False
    max_retries: int = 3
    parse_attempts: int = 2
    embeddings: Embeddings | None = None
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    limit: asyncio.Semaphore | None = field(default=None, repr=False)
    """Bounds the model calls in flight (set per run from `run.max_concurrency`)."""
    _runnables: dict[type, _Structured] = field(default_factory=dict, repr=False)
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    """Per-client memo for objects built from it (e.g. the Ragas judge)."""

    async def _with_retries(self, runnable: Any, messages: list[BaseMessage]) -> Any:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(initial=self.backoff_initial, max=self.backoff_max),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    scope = current_scope()
                    if scope is not None:
                        scope.retries += 1
                # The slot is held for the call only: not while backing off, nor while the
                # caller builds prompts or parses, so CPU work never idles a slot.
                async with self.slot():
                    return await runnable.ainvoke(messages)
        raise AssertionError("unreachable")  # pragma: no cover

    def slot(self) -> AbstractAsyncContextManager[Any]:
        """One of the run's model-call slots (no limit when `limit` is unset)."""
        return self.limit if self.limit is not None else nullcontext()

    def _build_runnable(self, schema: type[BaseModel]) -> _Structured:
        if self.method == "prompt":
            return _Structured(self.chat, None)
        options: dict[str, Any] = {} if self.method == "native" else {"method": self.method}
        chain = self.chat.with_structured_output(schema, **options)
        # LangChain composes `bound model | post-processing | parser`. We call the bound
        # model and parse its message ourselves: LangChain's `include_raw` wrapping (a map,
        # two assigns and a fallback, each with its own callback run) costs ~1.5 ms of CPU
        # per call, which bounds how many calls one event loop can keep in flight.
        if isinstance(chain, RunnableSequence) and isinstance(
            chain.first, BaseChatModel | RunnableBinding
        ):
            return _Structured(chain.first, _parser(chain.steps[1:]))
        return _Structured(  # an unknown composition: let LangChain wrap it
            self.chat.with_structured_output(schema, include_raw=True, **options), None, True
        )

    def _runnable(self, schema: type[BaseModel]) -> _Structured:
        # Building a structured-output runnable costs milliseconds; build one per schema.
        if schema not in self._runnables:
            self._runnables[schema] = self._build_runnable(schema)
        return self._runnables[schema]

    async def structured(
        self, messages: list[BaseMessage], schema: type[T], *, one_off: bool = False
    ) -> T:
        """Call the model for an instance of `schema`: retried, repaired, or reported.

        Args:
            messages: the prompt.
            schema: the pydantic model to return.
            one_off: the schema is built for this call only (don't keep its runnable).

        Raises:
            StructuredOutputError: when neither the retries nor repair yield a valid instance.
        """
        prompt = (
            _with_schema_instructions(messages, schema) if self.method == "prompt" else messages
        )
        call = self._runnable(schema) if not one_off else self._build_runnable(schema)
        raw_text, reason = "", "no output"
        for _ in range(self.parse_attempts):
            result = await self._with_retries(call.runnable, prompt)
            error: Any = None
            if call.include_raw:
                if result.get("parsed") is not None:
                    return cast(T, result["parsed"])
                result, error = result.get("raw"), result.get("parsing_error")
            elif call.parse is not None:
                try:
                    parsed = call.parse(result)
                    if isinstance(parsed, schema):
                        return parsed
                    if isinstance(parsed, dict):
                        return schema.model_validate(parsed)
                except Exception as exc:  # noqa: BLE001 - any parser failure is repaired below
                    error = exc
            raw_text = _message_text(result)
            try:
                return parse_structured(raw_text, schema)
            except (ValueError, ValidationError) as exc:
                reason = str(error or exc).splitlines()[0][:300]
            scope = current_scope()
            if scope is not None:
                scope.repairs += 1
            prompt = [
                *prompt,
                AIMessage(content=raw_text or "(empty)"),
                HumanMessage(
                    content=f"That output was not valid: {reason}. Reply with only one JSON "
                    f"object matching the {schema.__name__} schema."
                ),
            ]
        raise StructuredOutputError(schema.__name__, raw_text, reason)


@dataclass(frozen=True)
class _Structured:
    """How to call a model for one schema: the runnable and how to parse its message."""

    runnable: Any
    parse: Callable[[Any], Any] | None
    include_raw: bool = False
    """`runnable` returns LangChain's `{"raw", "parsed", "parsing_error"}`."""


def _parser(steps: list[Any]) -> Callable[[Any], Any]:
    """Parse a model message with LangChain's own post-processing steps, without callbacks."""
    if len(steps) == 1 and isinstance(steps[0], BaseLLMOutputParser):
        parser = steps[0]
        return lambda message: parser.parse_result([ChatGeneration(message=message)])
    chain = steps[0] if len(steps) == 1 else RunnableSequence(*steps)
    return lambda message: chain.invoke(message, {"callbacks": []})


def _message_text(message: Any) -> str:
    if message is None:
        return ""
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        return json.dumps(tool_calls[0].get("args", {}))
    content = getattr(message, "content", message)
    if isinstance(content, list):
        content = "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def parse_structured(text: str, schema: type[T]) -> T:
    """Parse model text into `schema`, repairing fences, prose around JSON and broken JSON.

    Raises:
        ValueError: no JSON object could be recovered.
        ValidationError: JSON was recovered but does not fit the schema.
    """
    cleaned = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip(), flags=re.S)
    start = cleaned.find("{")
    if start < 0:
        raise ValueError("no JSON object in the output")
    candidate = cleaned[start : cleaned.rfind("}") + 1] or cleaned[start:]
    try:
        data = json.loads(candidate)
    except json.JSONDecodeError:
        data = repair_json(cleaned[start:], return_objects=True)
    if not isinstance(data, dict) or not data:
        raise ValueError("no JSON object in the output")
    return schema.model_validate(data)


def _with_schema_instructions(
    messages: list[BaseMessage], schema: type[BaseModel]
) -> list[BaseMessage]:
    instructions = (
        "Reply with only one JSON object, no prose and no code fence, that matches this JSON "
        f"schema:\n{json.dumps(schema.model_json_schema(), ensure_ascii=False)}"
    )
    if messages and isinstance(messages[0], SystemMessage):
        first = SystemMessage(content=f"{messages[0].content}\n\n{instructions}")
        return [first, *messages[1:]]
    return [SystemMessage(content=instructions), *messages]
