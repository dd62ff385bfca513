"""The response cache: same prompt and model settings -> the stored response, marked cached."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from personagen.llm.cache import ResponseCache, with_response_cache
from personagen.llm.fake import FakeChatModel

PROMPT = [HumanMessage(content="Say something about deposits.")]


async def test_a_second_identical_call_is_served_from_the_file(tmp_path: Path) -> None:
    model = FakeChatModel(responders={"text": lambda r: f"reply {r.index}"})
    cached = with_response_cache(model, tmp_path / "cache.sqlite")
    first = await cached.agenerate([PROMPT])
    second = await cached.agenerate([PROMPT])
    assert len(model.calls) == 1
    assert second.generations[0][0].text == first.generations[0][0].text == "reply 0"
    hit = second.generations[0][0]
    assert hit.generation_info and hit.generation_info["cached"] is True
    usage = first.generations[0][0].message.usage_metadata  # type: ignore[attr-defined]
    assert usage["input_tokens"] > 0
    assert {k: hit.message.usage_metadata[k] for k in usage} == usage  # type: ignore[attr-defined]

    # Another process (a new cache on the same file) sees it too.
    again = with_response_cache(FakeChatModel(), tmp_path / "cache.sqlite")
    assert (await again.ainvoke(PROMPT)).content == "reply 0"


async def test_other_settings_or_prompts_miss(tmp_path: Path) -> None:
    model = FakeChatModel(responders={"text": lambda r: f"reply {r.index}"})
    cached = with_response_cache(model, tmp_path / "cache.sqlite")
    await cached.ainvoke(PROMPT)
    await cached.ainvoke([HumanMessage(content="Something else.")])
    await cached.bind(stop=["\n"]).ainvoke(PROMPT)  # a different call option
    other = with_response_cache(model.model_copy(update={"model_name": "other"}), tmp_path / "c2")
    await other.ainvoke(PROMPT)
    assert len(model.calls) == 4


async def test_an_unreadable_entry_is_a_miss_then_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite"
    model = FakeChatModel(responders={"text": lambda r: f"reply {r.index}"})
    cached = with_response_cache(model, path)
    await cached.ainvoke(PROMPT)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE responses SET value = 'not json'")
    assert (await cached.ainvoke(PROMPT)).content == "reply 1"
    assert (await cached.ainvoke(PROMPT)).content == "reply 1"
    assert len(model.calls) == 2


def test_clear_forgets_everything(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path / "cache.sqlite")
    model = FakeChatModel(cache=cache)
    model.invoke(PROMPT)
    cache.clear()
    model.invoke(PROMPT)
    assert len(model.calls) == 2


async def test_a_response_that_is_not_json_is_returned_not_cached(tmp_path: Path) -> None:
    from langchain_core.outputs import ChatGeneration, ChatResult

    class Odd(FakeChatModel):
        async def _agenerate(self, messages: Any, stop: Any = None, **kwargs: Any) -> ChatResult:
            result = await super()._agenerate(messages, stop, **kwargs)
            generation = result.generations[0]
            assert isinstance(generation, ChatGeneration)
            generation.generation_info = {"handle": object()}  # a provider's odd extra
            return result

    model = Odd(responders={"text": lambda r: f"reply {r.index}"})
    cached = with_response_cache(model, tmp_path / "cache.sqlite")
    assert (await cached.ainvoke(PROMPT)).content == "reply 0"
    assert (await cached.ainvoke(PROMPT)).content == "reply 1"  # not cached, not failed
