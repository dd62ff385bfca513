"""LLMClient: structured output parsed, repaired or reported; transient failures retried."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from pydantic import BaseModel, Field

from personagen.errors import StructuredOutputError
from personagen.llm.client import LLMClient, TransientLLMError
from personagen.llm.fake import FakeChatModel, FakeRequest
from personagen.llm.usage import call_scope

PROMPT = [HumanMessage(content="Rate this.")]


class Verdict(BaseModel):
    score: int = Field(ge=1, le=5)
    reason: str


def _client(model: FakeChatModel, **kwargs: object) -> LLMClient:
    return LLMClient(chat=model, model_name="fake", backoff_initial=0.0, **kwargs)  # type: ignore[arg-type]


async def test_valid_output_is_parsed_in_one_call() -> None:
    model = FakeChatModel(responders={"Verdict": lambda r: {"score": 4, "reason": "clear"}})
    verdict = await _client(model).structured(PROMPT, Verdict)
    assert verdict == Verdict(score=4, reason="clear")
    assert len(model.calls) == 1


@pytest.mark.parametrize(
    "raw",
    [
        '```json\n{"score": 3, "reason": "ok"}\n```',
        'Sure! Here it is: {"score": 3, "reason": "ok"} Hope that helps.',
        '{"score": 3, "reason": "ok",}',  # trailing comma
        '{"score": 3, "reason": "ok"',  # cut short
    ],
)
async def test_malformed_json_is_repaired_without_another_call(raw: str) -> None:
    model = FakeChatModel(faults=lambda r: raw)
    with call_scope("judge") as scope:
        verdict = await _client(model).structured(PROMPT, Verdict)
    assert verdict == Verdict(score=3, reason="ok")
    assert len(model.calls) == 1
    assert scope.repairs == 0  # repaired from the text: no second call


async def test_invalid_output_is_asked_again_with_the_error() -> None:
    outputs = ['{"score": 9, "reason": "too high"}', None]

    def fault(request: FakeRequest) -> str | None:
        return outputs[request.index]

    model = FakeChatModel(
        faults=fault, responders={"Verdict": lambda r: {"score": 2, "reason": "x"}}
    )
    with call_scope("judge") as scope:
        verdict = await _client(model).structured(PROMPT, Verdict)
    assert verdict.score == 2
    assert scope.repairs == 1
    second = model.calls[1].messages
    assert second[-2].content == outputs[0]  # the bad output is shown back...
    assert "not valid" in str(second[-1].content) and "score" in str(second[-1].content)


async def test_output_that_never_parses_is_reported_with_the_raw_text() -> None:
    model = FakeChatModel(faults=lambda r: "I cannot rate this.")
    with pytest.raises(StructuredOutputError) as caught:
        await _client(model, parse_attempts=2).structured(PROMPT, Verdict)
    assert "I cannot rate this." in str(caught.value.raw)
    assert "Verdict" in str(caught.value)
    assert len(model.calls) == 2


async def test_transient_errors_are_retried_then_counted() -> None:
    def fault(request: FakeRequest) -> BaseException | None:
        return TransientLLMError("429 slow down") if request.index < 2 else None

    model = FakeChatModel(
        faults=fault, responders={"Verdict": lambda r: {"score": 5, "reason": "y"}}
    )
    with call_scope("judge") as scope:
        verdict = await _client(model, max_retries=3).structured(PROMPT, Verdict)
    assert verdict.score == 5
    assert scope.retries == 2
    assert len(model.calls) == 3


async def test_retries_give_up_after_max_retries() -> None:
    model = FakeChatModel(faults=lambda r: TransientLLMError("503"))
    with pytest.raises(TransientLLMError):
        await _client(model, max_retries=2).structured(PROMPT, Verdict)
    assert len(model.calls) == 3


async def test_non_transient_errors_are_not_retried() -> None:
    model = FakeChatModel(faults=lambda r: RuntimeError("bad request"))
    with pytest.raises(RuntimeError):
        await _client(model, max_retries=3).structured(PROMPT, Verdict)
    assert len(model.calls) == 1


@pytest.mark.parametrize("method", ["native", "json_schema", "function_calling", "json_mode"])
def test_openai_structured_output_is_parsed_by_langchains_own_parser(method: str) -> None:
    """ChatOpenAI's composition (bound model | refusal check | parser) is split, not wrapped."""
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="gpt-4o-mini", api_key="sk-test", base_url="http://127.0.0.1:9")  # type: ignore[arg-type]
    client = LLMClient(chat=chat, model_name="gpt-4o-mini", method=method)  # type: ignore[arg-type]
    call = client._runnable(Verdict)
    assert call.parse is not None and not call.include_raw
    bound = call.runnable.kwargs
    if method == "function_calling":
        assert bound["tools"][0]["function"]["name"] == "Verdict"
        message = AIMessage(
            content="",
            tool_calls=[{"name": "Verdict", "args": {"score": 2, "reason": "r"}, "id": "c1"}],
        )
    elif method == "json_mode":
        assert bound["response_format"] == {"type": "json_object"}
        message = AIMessage(content=json.dumps({"score": 2, "reason": "r"}))
    else:  # json_schema: langchain-openai puts the SDK's parsed object on the message
        assert "response_format" in bound
        message = AIMessage(
            content=json.dumps({"score": 2, "reason": "r"}),
            additional_kwargs={"parsed": Verdict(score=2, reason="r")},
        )
    parsed = call.parse(message)
    assert Verdict.model_validate(parsed) == Verdict(score=2, reason="r")
    assert client._runnable(Verdict) is call  # built once per schema
