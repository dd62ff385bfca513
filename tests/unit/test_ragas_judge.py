"""The Ragas judge: metrics through our client, prompts rendered exactly as Ragas renders them."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from personagen.evaluators.ragas_metrics import RagasJudge, _ragas_prompt_base
from personagen.llm.client import LLMClient
from personagen.llm.fake import FakeChatModel, FakeEmbeddings

CONTEXT = "Most lenders ask for a deposit of at least five percent of the property price."
ANSWER = "Most lenders ask for a deposit of at least five percent."


def _judge(model: FakeChatModel) -> RagasJudge:
    return RagasJudge(LLMClient(chat=model, model_name="fake", embeddings=FakeEmbeddings()))


def _prompts(judge: RagasJudge) -> list[Any]:
    base = _ragas_prompt_base()
    return [p for m in judge._metrics.values() for p in vars(m).values() if isinstance(p, base)]


async def test_metrics_score_through_the_client() -> None:
    model = FakeChatModel()
    judge = _judge(model)
    for metric in ("faithfulness", "answer_relevancy", "context_precision"):
        score = await judge.score(
            metric, question="How big a deposit do I need?", answer=ANSWER, contexts=[CONTEXT]
        )
        assert score.value is not None and 0.0 <= score.value <= 1.0, (metric, score)
    schemas = {c.schema_name for c in model.calls}
    assert {"StatementGeneratorOutput", "NLIStatementOutput"} <= schemas


async def test_prompts_are_the_text_ragas_itself_renders() -> None:
    model = FakeChatModel()
    judge = _judge(model)
    prompts = _prompts(judge)
    assert len(prompts) == 4 and all("to_string" in vars(p) for p in prompts)  # memoized
    for metric in ("faithfulness", "answer_relevancy", "context_precision"):
        await judge.score(metric, question="Deposit?", answer=ANSWER, contexts=[CONTEXT])
    base = _ragas_prompt_base()
    sent = {str(c.messages[-1].content) for c in model.calls}
    for prompt in prompts:
        assert not inspect.ismethod(prompt.to_string)  # still the memoized one: verified
    # What was sent is, word for word, what Ragas' own BasePrompt.to_string renders.
    rendered = set()
    for call in model.calls:
        text = str(call.messages[-1].content)
        for prompt in prompts:
            if text.startswith(prompt.instruction):
                data = prompt.input_model.model_validate_json(text.split("input: ", 1)[1][:-9])
                rendered.add(base.to_string(prompt, data))
    assert rendered == sent


@pytest.mark.parametrize("change", ["examples", "instruction"])
async def test_a_prompt_changed_after_memoizing_is_rendered_by_ragas(change: str) -> None:
    model = FakeChatModel()
    judge = _judge(model)
    prompt = judge._metrics["context_precision"].prompt
    if change == "examples":
        prompt.examples = prompt.examples[:1]  # the cached examples text is now stale
    else:
        prompt.instruction = "Judge it."  # read at call time: still correct
    await judge.score("context_precision", question="Deposit?", answer=ANSWER, contexts=[CONTEXT])
    base = _ragas_prompt_base()
    data = prompt.input_model.model_validate_json(
        str(model.calls[-1].messages[-1].content).split("input: ", 1)[1][:-9]
    )
    assert str(model.calls[-1].messages[-1].content) == base.to_string(prompt, data)
    assert inspect.ismethod(prompt.to_string) == (change == "examples")
