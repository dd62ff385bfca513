"""A counting OpenAI-compatible fake server on 127.0.0.1, for cost benchmarks of any tool.

It answers `POST /v1/chat/completions` (plain text, `response_format` json_schema or
json_object, `tools` with a forced function, `n` choices) and `POST /v1/embeddings`, and
counts calls and prompt / completion tokens with ONE tokenizer for every client:
`count_tokens`, a regex tokenizer (`\\w+` runs and single punctuation marks; tiktoken needs to
download its encodings, which this machine cannot). Prompt tokens are the messages' text
plus the JSON of any schema or tool definitions sent; completion tokens are the content or
tool-call arguments returned. The usage in each response is that same count, so a client's
own accounting can be checked against the server's.

Content is derived from the input, schema by schema: PersonaGen's schemas and Ragas' metric
schemas go through `personagen.llm.fake` (questions from the excerpt's sentences, answers
quoting the best-matching context sentence, NLI verdicts by overlap); any other schema (Ragas'
test-set transforms and synthesizers, read from the "JSON Schema:" block of its prompt) is
filled from the input text: headlines from its heading lines, themes and entities from its
frequent words, queries from its sentences, answers from the sentence matching the query.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from personagen.llm._text import content_words, sentences
from personagen.llm.fake import DEFAULT_RESPONDERS, FakeEmbeddings, FakeRequest

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The one tokenizer: runs of word characters, and each other non-space character."""
    return len(_TOKEN.findall(text))


@dataclass
class Counts:
    """What the server saw since the last `reset`."""

    chat_calls: int = 0
    embedding_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    embedding_tokens: int = 0
    schemas: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> Counts:
        return Counts(
            self.chat_calls,
            self.embedding_calls,
            self.prompt_tokens,
            self.completion_tokens,
            self.embedding_tokens,
            Counter(self.schemas),
        )


class _Schema:
    """Stands in for a pydantic class where `personagen.llm.fake` wants one."""

    def __init__(self, name: str, schema: dict[str, Any]) -> None:
        self.__name__ = name
        self._schema = schema

    def model_json_schema(self) -> dict[str, Any]:
        return self._schema


def _messages(raw: list[dict[str, Any]]) -> list[BaseMessage]:
    out: list[BaseMessage] = []
    for message in raw:
        content = message.get("content") or ""
        if isinstance(content, list):  # content parts
            content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        role = message.get("role")
        kind = {"system": SystemMessage, "assistant": AIMessage}.get(role, HumanMessage)
        out.append(kind(content=str(content)))
    return out


def _ragas_schema(prompt: str) -> dict[str, Any] | None:
    marker = "as specified in JSON Schema:\n"
    at = prompt.find(marker)
    if at < 0:
        return None
    text = prompt[at + len(marker) :]
    end = text.find("Do not use single quotes")
    try:
        return json.loads(text[:end] if end >= 0 else text)
    except json.JSONDecodeError:
        return None


def _input_text(request: FakeRequest) -> str:
    """The text a prompt is about: Ragas' `input:` block, or the last message."""
    data = request.ragas_input()
    if data:
        parts: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, dict):
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(data)
        return "\n".join(parts)
    return request.user


class _Filler:
    """Fills any JSON schema with values taken from one input text."""

    def __init__(self, text: str, defs: dict[str, Any]) -> None:
        self.text = text
        self.defs = defs
        self.sentences = [s for s in sentences(text) if len(content_words(s)) >= 3] or [
            text[:200] or "nothing"
        ]
        self.headings = [
            line.strip("#*= ").strip()
            for line in text.splitlines()
            if line.lstrip().startswith("#") or (0 < len(line.split()) <= 6 and line.isupper())
        ]
        frequent = Counter(w for w in content_words(text) if len(w) > 3)
        self.words = [w for w, _ in frequent.most_common(12)] or ["topic"]
        self.used: Counter[str] = Counter()

    def pick(self, pool: list[str], name: str) -> str:
        index = self.used[name]
        self.used[name] += 1
        return pool[index % len(pool)]

    def string(self, name: str) -> str:
        lowered = name.lower()
        if "headline" in lowered or "title" in lowered:
            return self.pick(self.headings or self.sentences, "h")[:80]
        if lowered in {"theme", "themes", "entities", "entity", "keyphrases", "concepts"}:
            return self.pick(self.words, "w")
        if lowered == "text":  # a summary or a rewrite: the text's first sentences
            return " ".join(self.sentences[:3])
        if "query" in lowered or "question" in lowered:
            words = content_words(self.pick(self.sentences, "q"))[:6]
            return f"What does the guide say about {' '.join(words)}?"
        if lowered in {"name"}:
            return self.pick(self.words, "n").title()
        return self.pick(self.sentences, "s")

    def fill(self, schema: dict[str, Any], name: str = "") -> Any:
        if "$ref" in schema:
            return self.fill(self.defs[schema["$ref"].rsplit("/", 1)[-1]], name)
        if "enum" in schema:
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            if key in schema:
                options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
                return self.fill(options[0], name)
        kind = schema.get("type", "object")
        if kind == "object":
            props = schema.get("properties", {})
            if not props and isinstance(schema.get("additionalProperties"), dict):
                return {w: self.fill(schema["additionalProperties"], w) for w in self.words[:3]}
            return {key: self.fill(sub, key) for key, sub in props.items()}
        if kind == "array":
            count = max(schema.get("minItems", 0), min(3, schema.get("maxItems", 3)))
            return [self.fill(schema.get("items", {}), name) for _ in range(count)]
        if kind == "integer":
            # Scores rate the input as good as their scale allows ("1 to 5 score"); verdicts 1.
            scale = re.search(r"(\d+) to (\d+)", str(schema.get("description", "")))
            return int(schema.get("maximum", scale.group(2) if scale else 1))
        if kind == "number":
            return float(min(schema.get("maximum", 1.0), 1.0))
        if kind == "boolean":
            return True
        return self.string(name)


def _answer_from_context(request: FakeRequest, schema: dict[str, Any]) -> dict[str, Any] | None:
    """Ragas' answer synthesis: the sentence of the context that best matches the query."""
    data = request.ragas_input()
    query = str(data.get("query", ""))
    context = str(data.get("context", "")) or _input_text(request)
    props = schema.get("properties", {})
    if not query or set(props) != {"text"}:
        return None
    wanted = set(content_words(query))
    best = max(sentences(context) or [context], key=lambda s: len(wanted & set(content_words(s))))
    return {"text": best}


def _persona_themes(request: FakeRequest) -> dict[str, Any]:
    """Ragas' persona-to-themes mapping: every persona of the input gets the input's themes."""
    data = request.ragas_input()
    themes = [str(t) for t in data.get("themes", [])][:3]
    names = [str(p.get("name")) for p in data.get("personas", []) if isinstance(p, dict)]
    return {"mapping": {name: themes for name in names}}


_RAGAS_TESTSET = {"PersonaThemesMapping": _persona_themes}


def respond(body: dict[str, Any]) -> tuple[str, bool, str]:
    """The reply's content for a chat request; whether it is a tool call; the schema name."""
    messages = _messages(body.get("messages", []))
    schema: dict[str, Any] | None = None
    name = "text"
    tool = False
    format_ = body.get("response_format") or {}
    if format_.get("type") == "json_schema":
        spec = format_.get("json_schema", {})
        schema, name = spec.get("schema", {}), spec.get("name", "schema")
    elif body.get("tools"):
        function = body["tools"][0]["function"]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            wanted = choice.get("function", {}).get("name")
            function = next(
                (t["function"] for t in body["tools"] if t["function"]["name"] == wanted), function
            )
        schema, name, tool = function.get("parameters", {}), function["name"], True
    prompt = "\n\n".join(str(m.content) for m in messages)
    if schema is None:
        schema = _ragas_schema(prompt)
        if schema is not None:
            name = str(schema.get("title", "schema"))
    if schema is None:
        if format_.get("type") == "json_object":
            return json.dumps({"text": (sentences(prompt) or [prompt])[-1]}), False, "json"
        words = content_words(messages[-1].content if messages else "")[:20]
        return "OK: " + " ".join(str(w) for w in words), False, "text"
    request = FakeRequest(schema=_Schema(name, schema), messages=messages)  # type: ignore[arg-type]
    responder = DEFAULT_RESPONDERS.get(name) or _RAGAS_TESTSET.get(name)
    value = responder(request) if responder is not None else None
    if value is None:
        value = _answer_from_context(request, schema)
    if value is None:
        value = _Filler(_input_text(request), schema.get("$defs", {})).fill(schema)
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return json.dumps(value, ensure_ascii=False), tool, name


class FakeOpenAIServer:
    """The server in a background thread; `url` is its `/v1` base URL."""

    def __init__(self, embedding_dim: int = 256) -> None:
        self.counts = Counts()
        self._lock = threading.Lock()
        self._embeddings = FakeEmbeddings(dim=embedding_dim)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self._reply(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.endswith("/chat/completions"):
                    self._reply(200, server.chat(body))
                elif self.path.endswith("/embeddings"):
                    self._reply(200, server.embed(body))
                else:
                    self._reply(404, {"error": {"message": f"no route {self.path}"}})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> Counts:
        """The counts so far, and start counting from zero."""
        with self._lock:
            counts, self.counts = self.counts, Counts()
        return counts

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt_text = "\n".join(
            json.dumps(m.get("content")) if not isinstance(m.get("content"), str) else m["content"]
            for m in body.get("messages", [])
        )
        extra = json.dumps([body.get("response_format"), body.get("tools")])
        prompt_tokens = count_tokens(prompt_text)
        if extra != "[null, null]":  # schema / tool definitions are part of the prompt
            prompt_tokens += count_tokens(extra)
        content, tool, name = respond(body)
        n = int(body.get("n") or 1)
        completion_tokens = count_tokens(content) * n
        with self._lock:
            self.counts.chat_calls += 1
            self.counts.prompt_tokens += prompt_tokens
            self.counts.completion_tokens += completion_tokens
            self.counts.schemas[name] += 1
        if tool:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": name, "arguments": content},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": content}, "stop"
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake"),
            "choices": [
                {"index": i, "message": message, "finish_reason": finish, "logprobs": None}
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input", [])
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs]
        tokens = sum(count_tokens(t) for t in texts)
        with self._lock:
            self.counts.embedding_calls += 1
            self.counts.embedding_tokens += tokens
        vectors = self._embeddings.embed_documents(texts)
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
            ],
            "model": body.get("model", "fake-embed"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
