"""The judges: bounded outputs, claim support, contrastive relevance, the self-test, the gate."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from personagen.evaluators.lexical import key_tokens, numbers
from personagen.evaluators.ragas_metrics import MetricScore, bounded_response_model
from personagen.evaluators.relevance import EmbeddingCache, contrastive_relevance, rank_candidates
from personagen.evaluators.selftest import auc
from personagen.evaluators.support import check_claims, ground_answer, source_sentences
from personagen.llm.fake import FakeEmbeddings
from personagen.nodes._judge import gate as _gate
from personagen.state.documents import Span
from personagen.state.items import QAPair, RetrievedContext
from personagen.state.metadata import JudgeSelfTest, MetricSelfTest

SOURCE = (
    "Indent with four spaces for each level of indentation. Tabs are never allowed. "
    'Check the interpreter with hasattr(sys, "real_prefix") only on old virtualenv releases. '
    "Store Windows paths as C:\\new\\table in raw strings. The maximum line length is 99 "
    "characters for code and 79 characters for docstrings."
)


def _ctx(text: str = SOURCE, doc: str = "d1") -> RetrievedContext:
    return RetrievedContext(chunk_id="c", doc_id=doc, start=0, end=len(text), score=1.0, text=text)


# --- bounded judge outputs ------------------------------------------------------------------


def test_binary_verdicts_only_accept_0_or_1() -> None:
    from personagen.evaluators.ragas_metrics import _ragas

    _ragas()
    from ragas.metrics.collections.context_precision.util import ContextPrecisionOutput
    from ragas.metrics.collections.faithfulness.util import NLIStatementOutput

    nli = bounded_response_model(NLIStatementOutput)
    ok = nli.model_validate({"statements": [{"statement": "s", "reason": "r", "verdict": 1}]})
    assert isinstance(ok, NLIStatementOutput)  # Ragas still gets its own type
    for bad in (2, -1, 254):
        with pytest.raises(ValueError):
            nli.model_validate({"statements": [{"statement": "s", "reason": "r", "verdict": bad}]})
        with pytest.raises(ValueError):
            bounded_response_model(ContextPrecisionOutput).model_validate(
                {"reason": "r", "verdict": bad}
            )
    schema = nli.model_json_schema()
    assert schema["$defs"]["StatementFaithfulnessAnswer"]["properties"]["verdict"]["enum"] == [0, 1]


@pytest.mark.parametrize("value", [1.33, 254.6, 1e15, -0.2, float("inf")])
def test_a_score_outside_0_1_is_an_error_never_a_score(value: float) -> None:
    score = MetricScore(value, "judge said so")
    assert score.value is None and "out-of-range" in score.reason


# --- claim support ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "Four spaces for each level of indentation.",
        "Use 4 spaces per indentation level.",
        'Only old virtualenv releases need the hasattr(sys, "real_prefix") check.',
        "Code lines may be 99 characters long, docstrings 79.",
    ],
)
def test_a_correct_paraphrase_is_supported(answer: str) -> None:
    checks = check_claims(answer, source_sentences([_ctx()]))
    assert all(c.supported for c in checks), [c.why for c in checks]
    assert all(c.source and c.source.text in SOURCE for c in checks)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("Indent with two spaces for each level of indentation.", "number"),
        ("The maximum line length is 120 characters for code.", "number"),
        ("The maximum line length is not 99 characters for code.", "negated"),
        ("Ask the lender.", "no checkable"),
        ('Check the interpreter with hasattr(sys, "base_prefix") on old releases.', "not in"),
        ("Yes.", ""),
    ],
)
def test_a_changed_fact_is_not_supported(answer: str, why: str) -> None:
    checks = check_claims(answer, source_sentences([_ctx()]))
    assert not all(c.supported for c in checks)
    assert why in " ".join(c.why for c in checks)


def test_numbers_and_key_tokens_survive_ugly_text() -> None:
    assert numbers("1,000 items, four levels, 5%, -3.5e2") >= {"1000", "4", "5", "-350"}
    assert {"C:\\new\\table", "os.path.join"} <= key_tokens(
        'paths like C:\\new\\table and os.path.join("a", "b"), e.g. here'
    )
    assert "e.g" not in key_tokens("e.g. this")


def test_edited_answer_is_grounded_claim_by_claim_across_documents() -> None:
    other = "Refunds are paid within 10 working days of the end of the tenancy."
    docs = {"d1": SOURCE, "d2": other}
    spans, left = ground_answer(
        "Refunds are paid within ten working days after the tenancy ends. Tabs are never allowed.",
        [_ctx()],
        docs.__getitem__,
        also_in=["d2"],
    )
    assert {s.doc_id for s in spans} == {"d1", "d2"} and not left
    for span in spans:
        assert docs[span.doc_id][span.start : span.end] == span.text


_ALPHABET = (
    "abcXYZ 0123456789 \"'\\{}[]()<>.,;:!?\n\t\u00e9\u00df\u4e2d\u6587\u0627\u0644\U0001f600"
)


@pytest.mark.parametrize("seed", range(40))
def test_support_and_relevance_never_crash_on_ugly_text(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 400)))
    answer = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 120)))
    checks = check_claims(answer or "x", source_sentences([_ctx(text or "x")]))
    assert all(isinstance(c.supported, bool) for c in checks)
    result = asyncio.run(
        contrastive_relevance(
            text[:60] or "q?",
            answer,
            other_questions=[text[60:120]],
            alternatives=[text, answer[:10]],
            cache=EmbeddingCache(FakeEmbeddings()),
        )
    )
    assert result.value is None or 0.0 <= result.value <= 1.0


# --- contrastive relevance -------------------------------------------------------------------


async def test_an_answer_to_another_question_loses_the_contrast() -> None:
    cache = EmbeddingCache(FakeEmbeddings())
    alternatives = [
        "Indent with four spaces for each level of indentation.",
        "The maximum line length is 99 characters for code and 79 characters for docstrings.",
        "Tabs are never allowed.",
    ]
    question = "How many spaces do I indent with?"
    others = ["What is the maximum line length for code?"]
    right = await contrastive_relevance(
        question, alternatives[0], other_questions=others, alternatives=alternatives, cache=cache
    )
    wrong = await contrastive_relevance(
        question, alternatives[1], other_questions=others, alternatives=alternatives, cache=cache
    )
    assert right.value == 1.0
    assert wrong.value is not None and wrong.value < 0.75
    ranked = await rank_candidates(question, alternatives, cache)
    assert ranked[0][0] == 0


# --- self-test and gate ----------------------------------------------------------------------


def test_auc_counts_ties_half_and_missing_as_zero() -> None:
    assert auc([1.0, 1.0], [0.0, 0.0]) == 1.0
    assert auc([0.5, 0.5], [0.5, 0.5]) == 0.5
    assert auc([None], [0.0]) == 0.5
    assert auc([], [1.0]) is None


def _pair(**update: Any) -> QAPair:
    base = QAPair(
        id="q1",
        question="How many spaces?",
        answer="Four spaces.",
        answerable=True,
        spans=[Span(doc_id="d", start=0, end=4, text="Four")],
        scores={"grounding": 1.0, "persona_fit": 0.9},
        status="judged",
    )
    return base.model_copy(update=update)


def _selftest(**passed: bool) -> JudgeSelfTest:
    return JudgeSelfTest(
        probes=3,
        source="questions",
        min_auc=0.75,
        metrics={
            m: MetricSelfTest(metric=m, auc=1.0 if ok else 0.5, passed=ok, reason="r")
            for m, ok in passed.items()
        },
    )


def test_a_judge_that_failed_its_selftest_does_not_accept() -> None:
    baseline = {"grounding": 0.5, "persona_fit": 0.6}
    trusted = _gate(_pair(), baseline, [], _selftest(grounding=True, persona_fit=True))
    assert trusted.status == "accepted"
    untrusted = _gate(_pair(), baseline, [], _selftest(grounding=True, persona_fit=False))
    assert untrusted.status == "unverified"
    assert untrusted.failed_checks == ["persona_fit judge failed its self-test"]
    # ... but it may still stop a pair (strictness costs pairs, never correctness).
    low = _pair(scores={"grounding": 1.0, "persona_fit": 0.1})
    stopped = _gate(low, baseline, [], _selftest(grounding=True, persona_fit=False))
    assert stopped.status == "failing" and stopped.failed_checks == ["persona_fit below 0.60"]
    wrong = _pair(scores={"grounding": 0.0, "persona_fit": 0.9})
    gated = _gate(wrong, baseline, [], _selftest(grounding=True, persona_fit=False))
    assert gated.status == "failing" and gated.failed_checks == ["grounding below 0.50"]
    # Without a self-test (switched off) every judge decides.
    assert _gate(_pair(), baseline, [], None).status == "accepted"


async def test_a_pair_failing_a_cheap_gate_costs_no_judge_call() -> None:
    from personagen.evaluators.judging import PairToJudge, judge_pair
    from personagen.llm.factory import make_llm_client
    from personagen.llm.fake import FakeChatModel
    from personagen.prompts.library import resolve_goal
    from personagen.state.items import PersonaProfile
    from personagen.state.spec import Goal, LLMSettings

    model = FakeChatModel()
    client = make_llm_client(LLMSettings(provider="fake"), chat_model=model)
    goal = resolve_goal(Goal(name="qa"))
    persona = PersonaProfile(name="P", description="A developer.")
    sources = source_sentences([_ctx()])

    def pair(answer: str) -> PairToJudge:
        return PairToJudge(
            question="How many spaces do I indent with?",
            answer=answer,
            contexts=[SOURCE],
            sources=sources,
            other_questions=["What is the maximum line length?"],
            alternatives=[s.text for s in sources],
        )

    sem = asyncio.Semaphore(2)
    fabricated = await judge_pair(
        client,
        goal,
        persona,
        pair("Indent with two spaces for each level of indentation."),
        plugin_semaphore=sem,
        hard_gates={"grounding": 0.5, "relevance": 0.75},
    )
    assert fabricated.scores["grounding"].value == 0.0
    assert fabricated.scores["faithfulness"].value is None
    assert "already fails grounding" in fabricated.scores["persona_fit"].reason
    assert model.calls == []
    right = await judge_pair(
        client,
        goal,
        persona,
        pair("Indent with four spaces for each level of indentation."),
        plugin_semaphore=sem,
        hard_gates={"grounding": 0.5, "relevance": 0.75},
    )
    assert all(s.value is not None for s in right.scores.values()), right.scores
    assert model.calls  # the model-judged metrics ran


def test_balanced_accuracy_at_the_baseline() -> None:
    from personagen.evaluators.selftest import balanced_accuracy

    # Ranks right above wrong (AUC 1) but passes every wrong answer at 0.5: useless as a gate.
    assert auc([0.9, 0.95], [0.82, 0.84]) == 1.0
    assert balanced_accuracy([0.9, 0.95], [0.82, 0.84], 0.5) == 0.5
    # Rejects everything: as useless.
    assert balanced_accuracy([0.1, 0.2], [0.0, 0.0], 0.6) == 0.5
    assert balanced_accuracy([1.0, 1.0], [0.0, None], 0.5) == 1.0
    assert balanced_accuracy([1.0], [0.0], None) is None


async def test_a_run_measures_its_judges_and_keeps_unverified_pairs_apart(
    tmp_path: Any, make_spec: Any
) -> None:
    import json

    from personagen.api import arun
    from personagen.llm.fake import FakeChatModel

    # A persona judge that likes everything: it cannot tell right answers from wrong ones.
    model = FakeChatModel(
        responders={
            "PersonaFitOut": lambda r: {"reason": "fine", "question_fit": 5, "answer_fit": 5}
        }
    )
    spec = make_spec(goal={"params": {"selftest": True, "num_questions": 4}})
    result = await arun(spec, chat_model=model, out_dir=tmp_path / "o", state_dir=tmp_path / "s")
    assert result.status == "done"
    metadata = json.loads((result.bundle_dir / "metadata.json").read_text())
    selftest = metadata["judge_selftest"]
    assert set(selftest["metrics"]) == {
        "grounding",
        "relevance",
        "faithfulness",
        "context_precision",
        "persona_fit",
    }
    assert selftest["probes"] >= 2 and selftest["tokens"] > 0
    verdicts = {m: v["passed"] for m, v in selftest["metrics"].items()}
    assert verdicts["persona_fit"] is False and verdicts["grounding"] is True
    for m, v in selftest["metrics"].items():
        assert all(s is None or 0.0 <= s <= 1.0 for s in v["good"] + v["bad"]), m
    # Nothing the untrusted judge vouched for is accepted; it sits in unverified.jsonl.
    assert not result.accepted and result.unverified
    qa = (result.bundle_dir / "qa.jsonl").read_text().splitlines()
    unverified = (result.bundle_dir / "unverified.jsonl").read_text().splitlines()
    assert len(unverified) == len(result.unverified)
    assert not any(json.loads(line)["answer"] for line in qa)  # only unanswerable, if any
    assert metadata["counts"]["unverified_by_reason"] == {
        "persona_fit judge failed its self-test": len(result.unverified)
    }
    assert any(r["kind"] == "stronger_judge" for r in metadata["recommendations"])
    report = (result.bundle_dir / "report.html").read_text()
    assert "Judges&#x27; self-test" in report or "Judges' self-test" in report
    assert "failed: does not decide" in report
    # Every score anywhere in the bundle is in [0, 1].
    for name in ("qa.jsonl", "unverified.jsonl", "rejected.jsonl"):
        for line in (result.bundle_dir / name).read_text().splitlines():
            assert all(0.0 <= v <= 1.0 for v in json.loads(line)["scores"].values())


@pytest.mark.parametrize("point", ["after_evaluation", "before_output"])
async def test_an_answer_edited_after_judging_is_judged_again(
    tmp_path: Any, make_spec: Any, point: str
) -> None:
    from personagen.api import arun
    from personagen.llm.fake import FakeChatModel
    from personagen.state.hooks import HookItem

    fabricated = "Lenders always ask for a deposit of 35 percent, paid in cash."

    def hook(items: list[HookItem], context: Any) -> list[HookItem]:
        items[0].answer = fabricated
        return items

    result = await arun(
        make_spec(run={"max_iterations": 1}),
        chat_model=FakeChatModel(),
        hooks={point: hook},
        out_dir=tmp_path / "o",
        state_dir=tmp_path / "s",
    )
    edited = [p for p in result.pairs.values() if p.answer == fabricated]
    assert len(edited) == 1
    pair = edited[0]
    assert pair.status == "rejected" and pair.scores.get("grounding") == 0.0
    assert "grounding below 0.50" in pair.failed_checks


async def test_cheap_judges_take_every_probe_model_judges_only_the_first() -> None:
    from personagen.evaluators.selftest import Probe, run_selftest
    from personagen.evaluators.support import SourceSentence
    from personagen.llm.factory import make_llm_client
    from personagen.llm.fake import FakeChatModel
    from personagen.prompts.library import resolve_goal
    from personagen.state.items import PersonaProfile
    from personagen.state.spec import Goal, LLMSettings

    facts = [
        "Indent with four spaces for each level of indentation.",
        "The maximum line length is 99 characters for code.",
        "Store Windows paths in raw strings with forward slashes.",
        "Every unit test must finish in under one second.",
        "Deposits are returned within ten working days after the tenancy ends.",
    ]
    questions = [
        "How many spaces for each indentation level?",
        "What is the maximum line length for code?",
        "How do I store Windows paths?",
        "How fast must a unit test finish?",
        "When are deposits returned?",
    ]
    probes = [
        Probe(q, SourceSentence(f"d{i}", 0, len(f), f), f)
        for i, (q, f) in enumerate(zip(questions, facts, strict=True))
    ]
    model = FakeChatModel()
    client = make_llm_client(LLMSettings(provider="fake"), chat_model=model)
    report = await run_selftest(
        client,
        resolve_goal(Goal(name="qa")),
        PersonaProfile(name="P", description="A developer."),
        probes,
        ["grounding", "relevance", "persona_fit"],
        source="questions",
        min_auc=0.75,
        plugin_semaphore=asyncio.Semaphore(2),
        model_probes=2,
    )
    assert len(report.metrics["grounding"].good) == len(report.metrics["relevance"].good) == 5
    assert len(report.metrics["persona_fit"].good) == len(report.metrics["persona_fit"].bad) == 2
    assert len(model.calls_for("PersonaFitOut")) == 4  # 2 probes, right and wrong
    assert report.trusted("grounding") and report.trusted("relevance")
