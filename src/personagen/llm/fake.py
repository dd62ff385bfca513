"""A deterministic, schema-aware fake chat model and fake embeddings for tests and dry runs.

`FakeChatModel` answers every structured-output request with a valid instance of the asked
schema whose content is derived from the prompt: questions come from the excerpt's
sentences, answers quote the context sentence that best overlaps the question, Ragas' NLI
verdicts check whether a statement occurs in the context, and so on. Tests override any
schema with a `responder`, inject latency, or inject faults on chosen calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from pydantic import BaseModel, ConfigDict, PrivateAttr

from personagen.llm._text import content_words, estimate_tokens, sentences, words


@dataclass
class FakeRequest:
    """What a responder sees: the schema asked for (or None for plain text) and the prompt."""

    schema: type[BaseModel] | None
    messages: Sequence[BaseMessage]
    index: int = field(default=0)

    @property
    def schema_name(self) -> str:
        """The requested schema's class name, or 'text'."""
        return self.schema.__name__ if self.schema is not None else "text"

    @property
    def prompt(self) -> str:
        """All message contents joined."""
        return "\n\n".join(str(m.content) for m in self.messages)

    @property
    def user(self) -> str:
        """The last message's content."""
        return str(self.messages[-1].content) if self.messages else ""

    def tag(self, name: str) -> list[str]:
        """Contents of `<name ...>...</name>` blocks in the prompt."""
        pattern = rf"<{name}(?:\s[^>]*)?>\s*(.*?)\s*</{name}>"
        return re.findall(pattern, self.prompt, flags=re.S)

    def ragas_input(self) -> dict[str, Any]:
        """The JSON input block at the end of a Ragas prompt."""
        marker = self.prompt.rfind("input: {")
        if marker < 0:
            return {}
        text = self.prompt[marker + len("input: ") :]
        end = text.rfind("}")
        try:
            return json.loads(text[: end + 1])
        except json.JSONDecodeError:
            return {}


Responder = Callable[[FakeRequest], Any]
FaultPlan = Callable[[FakeRequest], BaseException | str | None]


class FakeChatModel(BaseChatModel):
    """Deterministic chat model: valid structured output derived from the prompt.

    Attributes:
        responders: per schema name (or "text"), a function returning a dict, a model
            instance or a string; returning None falls through to the default.
        latency: seconds each call sleeps (to benchmark orchestration overhead).
        latency_jitter: each call sleeps `latency` x a factor drawn uniformly from
            [1 - jitter, 1 + jitter], from the request's position (deterministic).
        faults: called before each call; may return an exception to raise, or a string to
            return as raw output (e.g. invalid JSON), or None.
        model_name: reported in usage accounting.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    responders: dict[str, Responder] = {}
    latency: float = 0.0
    latency_jitter: float = 0.0
    faults: FaultPlan | None = None
    model_name: str = "fake-chat"
    _calls: list[FakeRequest] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "personagen-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    @property
    def calls(self) -> list[FakeRequest]:
        """Every request made so far, in order."""
        return list(self._calls)

    def calls_for(self, schema_name: str) -> list[FakeRequest]:
        """The requests made for one schema (or "text")."""
        return [c for c in self._calls if c.schema_name == schema_name]

    def reset(self) -> None:
        """Forget recorded calls."""
        with self._lock:
            self._calls.clear()

    def _latency(self, index: int) -> float:
        if not self.latency_jitter:
            return self.latency
        # A fixed hash of the call's position: the same run sleeps the same, and the mean
        # stays `latency`.
        unit = int(hashlib.sha256(str(index).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return self.latency * (1.0 + self.latency_jitter * (2.0 * unit - 1.0))

    def _respond(self, messages: list[BaseMessage], schema: type[BaseModel] | None) -> str:
        with self._lock:
            request = FakeRequest(schema=schema, messages=messages, index=len(self._calls))
            self._calls.append(request)
        if self.faults is not None:
            fault = self.faults(request)
            if isinstance(fault, BaseException):
                raise fault
            if isinstance(fault, str):
                return fault
        responder = self.responders.get(request.schema_name)
        value = responder(request) if responder is not None else None
        if value is None:
            value = default_response(request)
        if isinstance(value, BaseModel):
            return value.model_dump_json()
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False)
        return str(value)

    def _result(self, messages: list[BaseMessage], text: str) -> ChatResult:
        prompt_tokens = sum(estimate_tokens(str(m.content)) for m in messages)
        output_tokens = estimate_tokens(text)
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "total_tokens": prompt_tokens + output_tokens,
            },
            response_metadata={"model_name": self.model_name, "finish_reason": "stop"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            time.sleep(self._latency(len(self._calls)))
        return self._result(messages, self._respond(messages, kwargs.get("schema")))

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self._latency(len(self._calls)))
        return self._result(messages, self._respond(messages, kwargs.get("schema")))

    def with_structured_output(
        self, schema: Any, *, include_raw: bool = False, **kwargs: Any
    ) -> Runnable[Any, Any]:
        """Return a runnable producing validated `schema` instances (LangChain's contract)."""
        return structured_runnable(self.bind(schema=schema), schema, include_raw=include_raw)


def structured_runnable(
    bound_model: Runnable[Any, Any], schema: type[BaseModel], *, include_raw: bool
) -> Runnable[Any, Any]:
    """Compose a model that emits JSON text with a pydantic parser, as LangChain does."""
    parser: PydanticOutputParser[Any] = PydanticOutputParser(pydantic_object=schema)
    if not include_raw:
        return bound_model | parser
    parse_ok = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    parse_failed = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=bound_model) | parse_ok.with_fallbacks(
        [parse_failed], exception_key="parsing_error"
    )


# --- default responses -------------------------------------------------------------------


def _overlap(a: str, b: str) -> float:
    wa, wb = set(content_words(a)), set(content_words(b))
    return len(wa & wb) / len(wa) if wa else 0.0


def _question_from(sentence: str) -> str:
    key = content_words(sentence)[:5]
    return f"What should I know about {' '.join(key)}?" if key else "What is this about?"


def _excerpt_sentences(request: FakeRequest) -> list[str]:
    excerpt = request.tag("excerpt")
    if not excerpt:
        match = re.search(r"Text:\s*(.*?)\n\n", request.user, flags=re.S)
        excerpt = [match.group(1)] if match else [request.user]
    return [s for s in sentences(excerpt[0]) if len(content_words(s)) >= 3]


def _avoided(request: FakeRequest) -> set[str]:
    block = re.search(r"already asked[^\n]*\n((?:- .*\n?)*)", request.user)
    avoided = set()
    if block:
        avoided = {line[2:].strip() for line in block.group(1).splitlines() if line.strip()}
    avoided.update(re.findall(r'rejected: "(.*?)"', request.user))
    return avoided


def _questions(request: FakeRequest) -> dict[str, Any]:
    count = re.search(r"(?:exactly|Write) (\d+)", request.user)
    n = int(count.group(1)) if count else 3
    avoided = _avoided(request)
    out: list[dict[str, str]] = []
    for sentence in _excerpt_sentences(request):
        question = _question_from(sentence)
        if question not in avoided and all(q["question"] != question for q in out):
            out.append({"question": question})
        if len(out) == n:
            break
    return {"questions": out}


def _replacement(request: FakeRequest) -> dict[str, Any]:
    avoided = _avoided(request)
    for sentence in reversed(_excerpt_sentences(request)):
        question = _question_from(sentence)
        if question not in avoided:
            return {"question": question}
    return {"question": "What else does this cover?"}


def _contexts(request: FakeRequest) -> list[str]:
    blocks = request.tag("context")
    if blocks:
        return blocks
    return re.findall(r"^Text \d+: (.*)$", request.user, flags=re.M)


def _answer(request: FakeRequest) -> dict[str, Any]:
    tagged = request.tag("question")
    question = tagged[-1] if tagged else request.user.rsplit("Question:", 1)[-1]
    best, best_score = "", 0.0
    for context in _contexts(request):
        for sentence in sentences(context):
            score = _overlap(question, sentence)
            if score > best_score:
                best, best_score = sentence, score
    if best_score < 0.34:
        return {"answerable": False, "answer": "", "quotes": []}
    return {"answerable": True, "answer": best, "quotes": [best]}


def _persona_fit(request: FakeRequest) -> dict[str, Any]:
    # A judge worth its name: an answer that does not take up the question does not suit.
    question = (request.tag("question") or [""])[-1]
    answer = (request.tag("answer") or [""])[-1]
    if not question:
        found = re.search(r"Question: (.*)\nAnswer: (.*)", request.user, flags=re.S)
        question, answer = found.groups() if found else ("", "")
    fits = _overlap(question, answer) >= 0.25
    return {
        "reason": "The question and answer suit this person."
        if fits
        else "The answer does not take up the question.",
        "question_fit": 4,
        "answer_fit": 4 if fits else 1,
    }


def _topic(request: FakeRequest) -> dict[str, Any]:
    rule = (request.tag("rule") or [""])[0]
    text = (request.tag("text") or [""])[0]
    hits = set(content_words(rule)) & set(content_words(text))
    reason = f"shares {', '.join(sorted(hits))}" if hits else "no overlap with the rule"
    return {"reason": reason, "matches": bool(hits)}


def _persona_profile(request: FakeRequest) -> dict[str, Any]:
    description = (request.tag("description") or [request.user])[0]
    key = content_words(description)
    return {
        "role": " ".join(key[:3]) or "reader",
        "expertise": "novice",
        "goals": [f"understand {' '.join(key[:3])}"] if key else [],
        "pain_points": [],
        "style": "plain language",
    }


def _ragas_statements(request: FakeRequest) -> dict[str, Any]:
    return {"statements": sentences(str(request.ragas_input().get("answer", "")))}


def _supported(statement: str, context: str) -> bool:
    """A statement is supported when one sentence of the context holds most of its words."""
    return any(_overlap(statement, s) >= 0.6 for s in sentences(context))


def _ragas_nli(request: FakeRequest) -> dict[str, Any]:
    data = request.ragas_input()
    context = str(data.get("context", ""))
    return {
        "statements": [
            {
                "statement": s,
                "reason": "found in the context" if _supported(s, context) else "not found",
                "verdict": int(_supported(s, context)),
            }
            for s in data.get("statements", [])
        ]
    }


def _ragas_relevance(request: FakeRequest) -> dict[str, Any]:
    response = str(request.ragas_input().get("response", ""))
    key = content_words(response)[:6]
    return {"question": f"What about {' '.join(key)}?", "noncommittal": int(not key)}


def _ragas_precision(request: FakeRequest) -> dict[str, Any]:
    data = request.ragas_input()
    answer = str(data.get("answer", ""))
    useful = any(_overlap(answer, s) >= 0.5 for s in sentences(str(data.get("context", ""))))
    return {"reason": "useful" if useful else "not useful", "verdict": int(useful)}


def _context_verdicts(request: FakeRequest) -> dict[str, Any]:
    answer = (request.tag("answer") or [""])[-1]
    passages = request.tag("passage") or re.findall(
        r"^Passage \d+: (.*)$", request.user, flags=re.M
    )
    verdicts = []
    for passage in passages:
        useful = any(_overlap(answer, s) >= 0.5 for s in sentences(passage))
        verdicts.append({"reason": "useful" if useful else "not useful", "verdict": int(useful)})
    return {"verdicts": verdicts}


DEFAULT_RESPONDERS: dict[str, Responder] = {
    "QuestionsOut": _questions,
    "ReplacementQuestionOut": _replacement,
    "AnswerOut": _answer,
    "PersonaFitOut": _persona_fit,
    "TopicJudgeOut": _topic,
    "PersonaProfileOut": _persona_profile,
    "StatementGeneratorOutput": _ragas_statements,
    "NLIStatementOutput": _ragas_nli,
    "AnswerRelevanceOutput": _ragas_relevance,
    "ContextPrecisionOutput": _ragas_precision,
    "ContextVerdictsOut": _context_verdicts,
}


def default_response(request: FakeRequest) -> Any:
    """The default output for a request: a known schema's responder, else a schema fill."""
    if request.schema is None:
        return "OK: " + " ".join(words(request.user)[:20])
    responder = DEFAULT_RESPONDERS.get(request.schema_name)
    if responder is not None:
        return responder(request)
    return fill_schema(request.schema.model_json_schema(), seed=request.prompt)


def fill_schema(schema: dict[str, Any], *, seed: str, defs: dict[str, Any] | None = None) -> Any:
    """A valid value for a JSON schema, with text varied by `seed`."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return fill_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], seed=seed, defs=defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return fill_schema(options[0], seed=seed, defs=defs)
    kind = schema.get("type", "object")
    if kind == "object":
        props = schema.get("properties", {})
        return {
            name: fill_schema(sub, seed=f"{seed}:{name}", defs=defs) for name, sub in props.items()
        }
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [
            fill_schema(schema.get("items", {}), seed=f"{seed}:{i}", defs=defs)
            for i in range(count)
        ]
    if kind == "integer":
        return max(schema.get("minimum", 1), min(1, schema.get("maximum", 1)))
    if kind == "number":
        return float(schema.get("maximum", 1.0))
    if kind == "boolean":
        return True
    digest = hashlib.sha256(seed.encode()).hexdigest()[:8]
    text = f"text {digest}"
    return text[: schema["maxLength"]] if "maxLength" in schema else text


class FakeEmbeddings(Embeddings):
    """Deterministic bag-of-words hashing embeddings (similar texts get similar vectors)."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _embed(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for word in content_words(text) or words(text):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dim
            vector[index] += 1.0 if digest[4] % 2 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages."""
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """Embed a query."""
        return self._embed(text)


# The summary and rewrite loops' defaults live next door; importing registers them.
from personagen.llm import fake_goals as _fake_goals  # noqa: E402, F401
