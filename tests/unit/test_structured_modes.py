"""Structured output adapts to the server: each fake below answers `response_format` and tools
the way a real server family does, and the client must end up on the best mode that works.

Fakes (httpx MockTransport behind the real ChatOpenAI, so the real request bodies are judged):
- llama.cpp (`python -m llama_cpp.server`): `json_schema` -> HTTP 500 naming response_format;
  `json_object` + `schema` -> grammar-constrained JSON of that schema; tools honoured.
- Ollama (0.5+) and vLLM: `json_schema` enforced; `json_object` gives JSON of any shape.
- LM Studio: `json_object` -> HTTP 400 "'response_format.type' must be 'json_schema' or 'text'".
- a bare server: ignores response_format and tools; only a prompt with the schema works.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from personagen.errors import StructuredOutputError
from personagen.llm._modes import (
    MODES_FILE,
    ModeMemory,
    example_instance,
    rejection_reason,
    shape_problem,
)
from personagen.llm.client import LLMClient
from personagen.llm.factory import is_small_model, make_llm_client
from personagen.llm.usage import call_scope
from personagen.state.spec import LLMSettings

PROMPT = [SystemMessage(content="You rate texts."), HumanMessage(content='Rate "ça va" \\ ok?')]
GOOD = {"score": 4, "reason": 'clear, "quoted" \\ text'}


class Verdict(BaseModel):
    score: int = Field(ge=1, le=5, description="How good it is.")
    reason: str = Field(description="Why, in one sentence.")


def _completion(body: dict[str, Any], *, content: str | None = None, tool_args: Any = None) -> Any:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_args is not None:
        name = body["tools"][0]["function"]["name"]
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(tool_args)},
            }
        ]
    return httpx.Response(
        200,
        json={
            "id": "cmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "m"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    )


def _prompt_has_schema(body: dict[str, Any]) -> bool:
    return any("JSON schema" in str(m.get("content")) for m in body["messages"])


def llamacpp(body: dict[str, Any]) -> httpx.Response:
    fmt = body.get("response_format") or {}
    if fmt.get("type") not in (None, "text", "json_object"):
        detail = (
            "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format',"
            " 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}"
        )
        return httpx.Response(500, json={"error": {"message": detail, "type": "internal"}})
    if fmt.get("type") == "json_object":
        return _completion(body, content=json.dumps(GOOD if "schema" in fmt else {"x": 1}))
    if body.get("tools"):
        return _completion(body, tool_args=GOOD)
    return _completion(body, content="Sure, it is fine.")


def ollama_or_vllm(body: dict[str, Any]) -> httpx.Response:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return _completion(body, content=json.dumps(GOOD))
    if fmt.get("type") == "json_object":  # JSON, but the `schema` key is ignored
        return _completion(body, content=json.dumps({"rating": "good"}))
    return _completion(body, content="fine")


def lmstudio(body: dict[str, Any]) -> httpx.Response:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_object":
        message = "'response_format.type' must be 'json_schema' or 'text'"
        return httpx.Response(400, json={"error": message})
    return ollama_or_vllm(body)


def bare(body: dict[str, Any]) -> httpx.Response:
    # Ignores response_format and tools; follows a prompt that shows the schema.
    if _prompt_has_schema(body) and "example" in json.dumps(body["messages"]):
        return _completion(body, content=f"Here you go: {json.dumps(GOOD)}")
    return _completion(body, content=json.dumps({"answer": "4/5"}))


class Server:
    """A fake OpenAI-compatible server: records every request body, answers with `behave`."""

    def __init__(self, behave: Callable[[dict[str, Any]], httpx.Response]) -> None:
        self.behave = behave
        self.bodies: list[dict[str, Any]] = []
        self.faults: list[httpx.Response] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.faults:
            return self.faults.pop(0)
        return self.behave(body)

    def modes(self) -> list[str]:
        out = []
        for body in self.bodies:
            fmt = (body.get("response_format") or {}).get("type")
            out.append(fmt or ("tools" if body.get("tools") else "prompt"))
        return out


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Server]:
    import langchain_openai

    def start(behave: Callable[[dict[str, Any]], httpx.Response]) -> Server:
        server = Server(behave)
        client = httpx.AsyncClient(transport=httpx.MockTransport(server.handle))
        monkeypatch.setattr(
            langchain_openai,
            "ChatOpenAI",
            functools.partial(langchain_openai.ChatOpenAI, http_async_client=client),
        )
        return server

    return start


def _client(tmp_path: Path, **settings: Any) -> LLMClient:
    values = {"provider": "openai", "base_url": "http://127.0.0.1:8080/v1", "model": "m"}
    client = make_llm_client(LLMSettings(**{**values, **settings}), state_dir=tmp_path)
    client.backoff_initial, client.backoff_max = 0.0, 0.0
    return client


@pytest.mark.parametrize(
    ("behave", "expected", "requests"),
    [
        (llamacpp, "json_mode", ["json_schema", "json_object"]),
        (ollama_or_vllm, "json_schema", ["json_schema"]),
        (lmstudio, "json_schema", ["json_schema"]),
        (bare, "prompt", ["json_schema", "json_object", "tools", "prompt"]),
    ],
    ids=["llama.cpp", "ollama/vllm", "lmstudio", "bare"],
)
async def test_the_first_call_finds_the_best_mode_the_server_takes(
    serve: Callable[..., Server],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    behave: Any,
    expected: str,
    requests: list[str],
) -> None:
    server = serve(behave)
    client = _client(tmp_path)
    with caplog.at_level("WARNING", logger="personagen.llm.client"):
        verdict = await client.structured(PROMPT, Verdict)
    assert verdict == Verdict.model_validate(GOOD)
    assert client.method == expected
    assert server.modes() == requests  # one request per mode tried, no retries of refusals
    assert len(caplog.records) == len(requests) - 1  # one log line per mode left
    # Later calls use the mode found, one request each.
    await client.structured(PROMPT, Verdict)
    assert server.modes()[len(requests) :] == requests[-1:]
    remembered = json.loads((tmp_path / MODES_FILE).read_text())["endpoints"]
    assert remembered["http://127.0.0.1:8080/v1 m"]["mode"] == expected


async def test_the_remembered_mode_is_used_by_the_next_run(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(llamacpp)
    await _client(tmp_path).structured(PROMPT, Verdict)
    server.bodies.clear()
    again = _client(tmp_path)
    assert again.method == "json_mode"
    await again.structured(PROMPT, Verdict)
    assert server.modes() == ["json_object"]  # no json_schema probe again
    other_model = _client(tmp_path, model="other")
    assert other_model.method == "json_schema"  # remembered per endpoint *and* model


async def test_concurrent_first_calls_probe_once(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(llamacpp)
    client = _client(tmp_path)
    results = await asyncio.gather(*(client.structured(PROMPT, Verdict) for _ in range(6)))
    assert all(r.score == 4 for r in results)
    assert server.modes().count("json_schema") == 1
    assert server.modes().count("json_object") == 6


async def test_json_mode_sends_the_bounded_schema_and_leaves_the_prompt_alone(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(llamacpp)
    await _client(tmp_path, structured_output="json_mode").structured(PROMPT, Verdict)
    (body,) = server.bodies
    schema = body["response_format"]["schema"]
    assert schema["properties"]["reason"]["maxLength"] == 400  # bounded like embedded's
    assert schema["properties"]["score"] == {"enum": [1, 2, 3, 4, 5]}
    assert schema["required"] == ["score", "reason"]
    # The prompt is the embedded model's: the grammar, not the prompt, carries the schema.
    assert body["messages"][0]["content"] == "You rate texts."


async def test_prompt_mode_shows_the_schema_and_a_filled_example(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(bare)
    verdict = await _client(tmp_path, structured_output="prompt").structured(PROMPT, Verdict)
    assert verdict.score == 4
    system = server.bodies[0]["messages"][0]["content"]
    example = json.loads(system.rsplit("\n", 1)[-1])
    assert example == {"score": 1, "reason": "<Why, in one sentence>"}
    assert "response_format" not in server.bodies[0] and "tools" not in server.bodies[0]


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (httpx.Response(503, json={"error": {"message": "model loading"}}), 503),
        (httpx.Response(429, json={"error": {"message": "slow down"}}), 429),
        (httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}), 500),
    ],
    ids=["503", "429", "500-unrelated"],
)
async def test_transient_errors_are_retried_and_do_not_demote(
    serve: Callable[..., Server], tmp_path: Path, fault: httpx.Response, status: int
) -> None:
    server = serve(ollama_or_vllm)
    server.faults = [fault, fault]
    client = _client(tmp_path)
    with call_scope("judge") as scope:
        await client.structured(PROMPT, Verdict)
    assert client.method == "json_schema"
    assert scope.retries == 2
    assert server.modes() == ["json_schema"] * 3


async def test_a_bad_request_about_something_else_is_raised_not_demoted(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    import openai

    server = serve(ollama_or_vllm)
    server.faults = [
        httpx.Response(400, json={"error": {"message": "context length 4096 exceeded"}})
    ]
    client = _client(tmp_path)
    with pytest.raises(openai.BadRequestError):
        await client.structured(PROMPT, Verdict)
    assert client.method == "json_schema" and not client.confirmed
    assert not (tmp_path / MODES_FILE).exists()


async def test_an_explicit_mode_the_server_refuses_fails_at_once(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    import openai

    server = serve(llamacpp)
    client = _client(tmp_path, structured_output="json_schema")
    with pytest.raises(openai.InternalServerError, match="response_format"):
        await client.structured(PROMPT, Verdict)
    assert server.modes() == ["json_schema"]  # a 500 naming response_format is not retried


async def test_a_confirmed_mode_the_server_later_refuses_moves_on(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    server = serve(ollama_or_vllm)
    client = _client(tmp_path)
    await client.structured(PROMPT, Verdict)
    server.behave = llamacpp  # the endpoint now runs another server
    assert (await client.structured(PROMPT, Verdict)).score == 4
    assert client.method == "json_mode"


async def test_the_last_mode_reports_unparseable_output_with_its_text(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    serve(lambda body: _completion(body, content="I'd rather not say \\ «nope»"))
    client = _client(tmp_path)
    with pytest.raises(StructuredOutputError) as caught:
        await client.structured(PROMPT, Verdict)
    assert client.method == "prompt"
    assert "nope" in str(caught.value.raw)


def test_openai_itself_starts_with_json_schema_and_unbounded_schemas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    client = make_llm_client(
        LLMSettings(provider="openai", model="gpt-4o-mini"), state_dir=tmp_path
    )
    assert client.method == "json_schema"
    assert client.fallbacks == ("json_mode", "function_calling", "prompt")
    assert not client.bounded_schemas and not client.small_model


@pytest.mark.parametrize(
    ("name", "small"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", True),
        ("qwen2.5:0.5b", True),
        ("gemma-3-270m-it", True),
        ("llama3.1:8b", False),
        ("Llama-3.2-1B-Instruct", False),
        ("gpt-4o-mini", False),
        ("qwen2.5-7b-instruct-q4_k_m.gguf", False),
        ("phi-3-mini-4k", False),
    ],
)
def test_models_under_a_billion_parameters_get_the_small_prompts(name: str, small: bool) -> None:
    assert is_small_model(name) is small


class Inner(BaseModel):
    kind: str = Field("a", json_schema_extra={"enum": ["a", "b"]})
    weight: float | None = None


class Outer(BaseModel):
    items: list[Inner] = Field(min_length=2)
    note: str | None = Field(None, description='Say "why" \\ here.')
    flag: bool = False
    tag: str = Field(examples=["home"])


def test_the_filled_example_covers_refs_optionals_enums_and_examples() -> None:
    example = example_instance(Outer.model_json_schema())
    assert example == {
        "items": [{"kind": "a", "weight": 0.5}, {"kind": "a", "weight": 0.5}],
        "note": '<Say "why" \\ here>',
        "flag": True,
        "tag": "home",
    }
    Outer.model_validate(example)  # the example itself is valid


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"score": 1, "reason": "x"}, False),
        ({"score": 9, "reason": "x"}, False),  # out of range: the model's mistake
        ({"rating": "good"}, True),
        ({"score": 1}, True),
        ([1, 2], True),
        (None, True),
    ],
)
def test_wrong_shape_is_judged_on_top_level_keys(data: Any, problem: bool) -> None:
    assert (shape_problem(data, Verdict) is not None) is problem


def test_only_request_side_errors_naming_the_mode_are_refusals() -> None:
    class Err(Exception):
        def __init__(self, status: int, text: str) -> None:
            super().__init__(text)
            self.status_code = status

    assert rejection_reason(Err(500, "Input should be 'text' or 'json_object'"), "json_schema")
    assert rejection_reason(Err(400, "tools are not supported"), "function_calling")
    assert rejection_reason(Err(400, "tools are not supported"), "json_schema") is None
    assert rejection_reason(Err(503, "response_format busy"), "json_schema") is None
    assert rejection_reason(Err(429, "response_format"), "json_schema") is None
    assert rejection_reason(ValueError("response_format"), "json_schema") is None


def test_an_unreadable_memory_file_is_ignored_and_rewritten(tmp_path: Path) -> None:
    path = tmp_path / MODES_FILE
    path.write_text("{not json")
    memory = ModeMemory(path)
    assert memory.get("k") is None
    memory.set("k", "prompt", "json_schema: refused")
    assert ModeMemory(path).get("k") == "prompt"
    path.write_text(json.dumps({"endpoints": {"k": {"mode": "bogus"}}}))
    assert ModeMemory(path).get("k") is None


def test_the_cli_flag_sets_the_mode(corpus_dir: Path) -> None:
    from personagen.cli import _apply_overrides
    from personagen.specfile import parse_spec

    spec = parse_spec({"persona": "A nurse", "data": [{"path": str(corpus_dir)}]})
    changed = _apply_overrides(spec, "openai", None, "http://127.0.0.1:1/v1", "function_calling")
    assert changed.llm.structured_output == "function_calling"
    assert changed.llm.base_url == "http://127.0.0.1:1/v1"
    with pytest.raises(Exception, match="structured"):
        _apply_overrides(spec, None, None, None, "xml")
