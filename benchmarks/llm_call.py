"""CPU per model call, layer by layer: the fake model, LangChain, our client, the cache.

Each layer is called a few hundred times with a zero-latency fake model; the figures are
milliseconds of wall and CPU per call. They bound how many calls one event loop can keep
in flight (at 50 ms a call and 8 at a time, a call has 6.25 ms).

    python benchmarks/llm_call.py [--calls 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402

from personagen.llm.cache import with_response_cache  # noqa: E402
from personagen.llm.client import LLMClient  # noqa: E402
from personagen.llm.fake import FakeChatModel  # noqa: E402
from personagen.llm.usage import UsageLog, UsageRecorder  # noqa: E402
from personagen.prompts.schemas import PersonaFitOut  # noqa: E402

MESSAGES = [
    SystemMessage(content="You judge whether a question and answer fit a persona. " * 10),
    HumanMessage(content="Question: how big a deposit do I need? Answer: 10% usually. " * 5),
]


async def per_call(label: str, calls: int, fn: Callable[[], Awaitable[Any]]) -> None:
    for _ in range(20):  # warm up
        await fn()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"{label:44s} {wall / calls * 1000:6.2f} ms wall {cpu / calls * 1000:6.2f} ms CPU")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = FakeChatModel()
        await per_call("fake model, ainvoke", calls, lambda: model.ainvoke(MESSAGES))
        log = UsageLog(folder / "usage.sqlite")
        recorder = UsageRecorder(sink=lambda call: log.append("bench", call))
        config: Any = {"callbacks": [recorder]}
        await per_call("+ usage recorder and log", calls, lambda: model.ainvoke(MESSAGES, config))
        structured = model.with_structured_output(PersonaFitOut, include_raw=True)
        await per_call(
            "LangChain with_structured_output(include_raw)",
            calls,
            lambda: structured.ainvoke(MESSAGES),
        )
        client = LLMClient(chat=model, model_name="fake")
        await per_call(
            "LLMClient.structured", calls, lambda: client.structured(MESSAGES, PersonaFitOut)
        )
        cached = with_response_cache(FakeChatModel(), folder / "cache.sqlite")
        counter = iter(range(10**9))
        await per_call(
            "cached model, every call a miss",
            calls,
            lambda: cached.ainvoke([MESSAGES[0], HumanMessage(content=str(next(counter)))]),
        )
        await per_call("cached model, every call a hit", calls, lambda: cached.ainvoke(MESSAGES))
        log.close()


if __name__ == "__main__":
    asyncio.run(main())
