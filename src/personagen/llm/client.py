"""`LLMClient`: the one way nodes and evaluators call a chat model.

It adds what LangChain models leave to the caller: retries with backoff on timeouts, 429s and
5xx (counted per node), structured output that works on every OpenAI-compatible server
(the best mode the server takes, found on the first call and remembered: see `_modes`), and
repair of malformed JSON before the error is reported with the raw output.
"""

from __future__ import annotations

import asyncio
import json
import logging
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
from personagen.llm._modes import (
    Mode,
    ModeMemory,
    names_structured_output,
    rejection_reason,
    request_options,
    schema_instructions,
    shape_problem,
)
from personagen.llm._schema import bound_schema
from personagen.llm.usage import current_scope

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
StructuredMethod = Literal["native", "json_schema", "function_calling", "json_mode", "prompt"]


class TransientLLMError(LLMError):
    """A failure worth retrying (fake models raise it to simulate timeouts and 429s)."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call should be retried: timeouts, connection errors, 429, 5xx."""
    if isinstance(exc, BudgetExhausted | asyncio.CancelledError | KeyboardInterrupt):
        return False  # decided before importing openai (~2 s): a Ctrl-C must stop at once
    if isinstance(exc, TransientLLMError | TimeoutError | ConnectionError):
        return True
    try:
        import openai
    except ImportError:  # pragma: no cover - langchain-openai depends on openai
        return False
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return True
    # A 5xx that names response_format is the server refusing the request's shape (llama.cpp's
    # server answers `json_schema` with a 500): the same request fails the same way again.
    return (
        isinstance(exc, openai.APIStatusError)
        and exc.status_code >= 500
        and not names_structured_output(exc)
    )


class _ModeRejected(Exception):
    """The server refused a structured-output mode (or ignored its schema)."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


@dataclass
class LLMClient:
    """A chat model plus how to get structured output from it and how hard to retry.

    Attributes:
        chat: the LangChain chat model.
        model_name: reported in metadata.
        method: how structured output is obtained (the mode in use).
        small_model: use the prompts' `embedded` variants (tiny local models).
        max_retries: retries after the first attempt on transient errors.
        parse_attempts: model calls allowed to get parseable structured output.
        embeddings: embeddings for answer relevancy and dedup, if any.
        fallbacks: modes to move to, in order, when the server refuses `method`.
        bounded_schemas: send schemas bounded like the embedded model's (`bound_schema`), so
            a server's grammar-constrained generation always finishes; for servers other
            than OpenAI's.
        modes: where the mode that works is remembered, under `endpoint`.
        endpoint: the endpoint/model key for `modes`.
        confirmed: `method` is known to work (remembered, or a call succeeded with it); until
            then, JSON of the wrong shape also moves to the next mode.
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
    fallbacks: tuple[Mode, ...] = ()
    bounded_schemas: bool = False
    modes: ModeMemory | None = field(default=None, repr=False)
    endpoint: str = ""
    confirmed: bool = True
    _runnables: dict[tuple[type, str], _Structured] = field(default_factory=dict, repr=False)
    _probe_locks: dict[int, asyncio.Lock] = field(default_factory=dict, repr=False)
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

    def _build_runnable(self, schema: type[BaseModel], method: str | None = None) -> _Structured:
        method = method or self.method
        if method == "prompt":
            return _Structured(self.chat, None)
        if self.bounded_schemas and method != "native":
            # Servers other than OpenAI's get the request fields themselves, with the schema
            # bounded as for the embedded model: llama.cpp-based servers compile it into a
            # grammar, and an unbounded string lets a small model ramble past max_tokens.
            bounded = bound_schema(schema.model_json_schema())
            fields = request_options(cast(Mode, method), schema.__name__, bounded)
            return _Structured(self.chat.bind(**fields), None)
        options: dict[str, Any] = {} if method == "native" else {"method": method}
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

    def _runnable(self, schema: type[BaseModel], method: str | None = None) -> _Structured:
        # Building a structured-output runnable costs milliseconds; build one per schema.
        key = (schema, method or self.method)
        if key not in self._runnables:
            self._runnables[key] = self._build_runnable(schema, method)
        return self._runnables[key]

    def _probe_lock(self) -> asyncio.Lock:
        # One lock per event loop (a client may serve several `asyncio.run`s in turn).
        loop = asyncio.get_running_loop()
        lock = self._probe_locks.get(id(loop))
        if lock is None:
            lock = self._probe_locks[id(loop)] = asyncio.Lock()
        return lock

    def _demote(self, method: str, reason: str) -> None:
        """Move to the next mode after the server refused `method` (once per refusal)."""
        if self.method != method or not self.fallbacks:
            return  # a concurrent call already moved on
        self.method, self.fallbacks = self.fallbacks[0], self.fallbacks[1:]
        self.confirmed = False
        log.warning(
            "%s: structured output %s refused (%s); using %s",
            self.endpoint or self.model_name,
            method,
            reason,
            self.method,
        )
        if self.modes is not None:
            self.modes.set(self.endpoint, cast(Mode, self.method), f"{method}: {reason}")

    def _confirm(self, method: str) -> None:
        if self.method == method and not self.confirmed:
            self.confirmed = True
            if self.modes is not None:
                self.modes.set(self.endpoint, cast(Mode, method))

    async def structured(
        self, messages: list[BaseMessage], schema: type[T], *, one_off: bool = False
    ) -> T:
        """Call the model for an instance of `schema`: retried, repaired, or reported.

        While the mode is not yet known to work, calls go one at a time, so the first one
        finds the mode and the others use it.

        Args:
            messages: the prompt.
            schema: the pydantic model to return.
            one_off: the schema is built for this call only (don't keep its runnable).

        Raises:
            StructuredOutputError: when neither the retries nor repair yield a valid instance.
        """
        while True:
            method = self.method
            probing = not self.confirmed and bool(self.fallbacks)
            if not probing:
                try:
                    return await self._structured_in(method, messages, schema, one_off, False)
                except _ModeRejected as rejected:
                    if not self.fallbacks and self.method == method:
                        raise (rejected.cause or LLMError(rejected.reason)) from None
                    self._demote(method, rejected.reason)
                    continue
            async with self._probe_lock():
                if self.method != method or self.confirmed:
                    continue  # another call settled the mode while this one waited
                try:
                    return await self._structured_in(method, messages, schema, one_off, True)
                except _ModeRejected as rejected:
                    self._demote(method, rejected.reason)

    async def _structured_in(
        self,
        method: str,
        messages: list[BaseMessage],
        schema: type[T],
        one_off: bool,
        probing: bool,
    ) -> T:
        """One structured call in `method`; `_ModeRejected` if the server refuses the mode."""
        if method == "prompt" or (method == "json_mode" and not self.bounded_schemas):
            # Prompt-and-parse needs the schema in the prompt; so does OpenAI's JSON mode (it
            # takes no schema and wants "JSON" named in the prompt). Other servers get the
            # schema in the request: llama.cpp's grammar enforces it, and the prompt stays
            # what the embedded model sees (a tiny model follows a longer prompt worse); a
            # server that ignores it answers in another shape and is moved to the next mode.
            prompt = _with_instructions(
                messages, schema_instructions(schema, example=method == "prompt")
            )
        else:
            prompt = messages
        call = self._build_runnable(schema, method) if one_off else self._runnable(schema, method)
        raw_text, reason = "", "no output"
        for _ in range(self.parse_attempts):
            try:
                result = await self._with_retries(call.runnable, prompt)
            except Exception as exc:
                refused = (
                    rejection_reason(exc, cast(Mode, method))
                    if method not in ("native", "prompt")
                    else None
                )
                if refused is None:
                    raise
                raise _ModeRejected(refused, exc) from exc
            error: Any = None
            if call.include_raw:
                if result.get("parsed") is not None:
                    self._confirm(method)
                    return cast(T, result["parsed"])
                result, error = result.get("raw"), result.get("parsing_error")
            elif call.parse is not None:
                try:
                    parsed = call.parse(result)
                    if isinstance(parsed, schema):
                        self._confirm(method)
                        return parsed
                    if isinstance(parsed, dict):
                        instance = schema.model_validate(parsed)
                        self._confirm(method)
                        return instance
                except Exception as exc:  # noqa: BLE001 - any parser failure is repaired below
                    error = exc
            raw_text = _message_text(result)
            if probing and method != "prompt":
                problem = _shape_of(result, raw_text, schema, method)
                if problem is not None:
                    raise _ModeRejected(f"the server ignored the schema: {problem}")
            try:
                instance = parse_structured(raw_text, schema)
                self._confirm(method)
                return instance
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


def _shape_of(message: Any, text: str, schema: type[BaseModel], method: str) -> str | None:
    """Why `message` shows the server ignored `method`'s schema, or None.

    A server that honours the mode answers with a tool call (tools) or with JSON (the JSON
    modes) whose top-level keys are the schema's. JSON cut short by `max_tokens` still
    starts like JSON: it is repaired or retried as usual, not blamed on the server.
    """
    if method == "function_calling" and not getattr(message, "tool_calls", None):
        return "no tool call in the reply"
    cleaned = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip(), flags=re.S)
    if not cleaned.startswith(("{", "[")):
        return f"text instead of JSON ({cleaned[:40]!r})"
    try:
        data = json.loads(cleaned)
    except json.JSONDecodeError:
        return None
    return shape_problem(data, schema)


def _with_instructions(messages: list[BaseMessage], instructions: str) -> list[BaseMessage]:
    if messages and isinstance(messages[0], SystemMessage):
        first = SystemMessage(content=f"{messages[0].content}\n\n{instructions}")
        return [first, *messages[1:]]
    return [SystemMessage(content=instructions), *messages]
