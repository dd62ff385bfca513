"""The pipeline around the judges loses nothing: with judges that know the truth (a test double
of the fake provider's judgements), every correct paraphrased answer of the labelled quality
set is accepted and every wrong one rejected.

The labelled set is `benchmarks/data/quality/labels.yaml`: each question has a correct answer
written as a paraphrase (not a copy of the source) and a wrong but on-topic one. Answers are
injected through an `after_answers` hook, so they go through re-grounding, judging, the
constraint gate, the loop and the bundle like any edited answer.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from personagen.api import arun
from personagen.llm._text import sentences
from personagen.llm.fake import FakeChatModel, FakeRequest
from personagen.state.hooks import HookItem

QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "quality"

pytestmark = pytest.mark.slow


def _labels() -> dict[str, Any]:
    return yaml.safe_load((QUALITY / "labels.yaml").read_text(encoding="utf-8"))


def _norm(text: str) -> str:
    return " ".join(text.split())


def _truth_judges(correct: set[str], wrong: set[str]) -> dict[str, Any]:
    """Judges that know which answers are right: the rule the test double follows."""

    def is_right(text: str) -> bool:
        text = _norm(text)
        if any(text in w or w in text for w in wrong):
            return False
        return any(text in c or c in text for c in correct)

    def statements(r: FakeRequest) -> dict[str, Any]:
        return {"statements": sentences(str(r.ragas_input().get("answer", "")))}

    def nli(r: FakeRequest) -> dict[str, Any]:
        verdicts = [
            {"statement": s, "reason": "checked", "verdict": int(is_right(s))}
            for s in r.ragas_input().get("statements", [])
        ]
        return {"statements": verdicts}

    def precision(r: FakeRequest) -> dict[str, Any]:
        return {"reason": "checked", "verdict": int(is_right(str(r.ragas_input()["answer"])))}

    def usefulness(r: FakeRequest) -> dict[str, Any]:
        verdict = int(is_right((r.tag("answer") or [""])[-1]))
        return {"verdicts": [{"reason": "checked", "verdict": verdict}] * len(r.tag("passage"))}

    def relevance(r: FakeRequest) -> dict[str, Any]:
        response = str(r.ragas_input().get("response", ""))
        question = questions_by_answer.get(_norm(response), "What is unrelated here?")
        return {"question": question if is_right(response) else "What is unrelated here?",
                "noncommittal": 0}

    def persona_fit(r: FakeRequest) -> dict[str, Any]:
        answer = (r.tag("answer") or [""])[-1]
        fit = 5 if is_right(answer) else 1
        return {"reason": "checked", "question_fit": 5, "answer_fit": fit}

    questions_by_answer: dict[str, str] = {}
    responders = {
        "StatementGeneratorOutput": statements,
        "NLIStatementOutput": nli,
        "ContextPrecisionOutput": precision,
        "ContextVerdictsOut": usefulness,
        "AnswerRelevanceOutput": relevance,
        "PersonaFitOut": persona_fit,
    }
    responders["_questions_by_answer"] = questions_by_answer  # filled by the test
    return responders


@pytest.mark.parametrize("doc", ["python-style-guide.rst", "ingest-runbook.md",
                                 "tenancy-deposits-guide.txt"])
async def test_truth_judges_accept_right_paraphrases_and_reject_wrong_answers(
    tmp_path: Path, doc: str
) -> None:
    labels = _labels()
    rows = [q for q in labels["questions"] if q["doc"] == doc]
    persona = next(p for p in labels["personas"] if p["doc"] == doc)
    # Alternate: half the questions get their correct answer, half the wrong one.
    injected = {q["question"]: (q["correct"] if i % 2 == 0 else q["wrong"], i % 2 == 0)
                for i, q in enumerate(rows)}
    correct = {_norm(a) for a, right in injected.values() if right}
    wrong = {_norm(a) for a, right in injected.values() if not right}
    responders = _truth_judges(correct, wrong)
    by_answer = responders.pop("_questions_by_answer")
    by_answer.update({_norm(a): q for q, (a, _) in injected.items()})

    def ask_labelled(items: list[HookItem], context: Any) -> list[HookItem]:
        return [HookItem(question=q) for q in injected]

    def inject(items: list[HookItem], context: Any) -> list[HookItem]:
        for item in items:
            item.answer = injected[item.question][0]
        return items

    spec = {
        "persona": {k: persona[k] for k in ("name", "description", "expertise")},
        "goal": {
            "name": "qa",
            "params": {"num_questions": 1, "selftest": False},
            # The deterministic judges (lexical grounding, contrastive relevance) are judges
            # too: the truth rule stands in for every judge here.
            "baseline": {"grounding": 0.0, "relevance": 0.0},
        },
        "data": [{"path": str(QUALITY / doc)}],
        "run": {"max_iterations": 1, "cache": False},
        "llm": {"provider": "fake"},
    }
    result = await arun(
        spec,
        chat_model=FakeChatModel(responders=responders),
        hooks={"after_questions": ask_labelled, "after_answers": inject},
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
    )
    assert result.status == "done"
    by_question = {p.question: p for p in result.pairs.values() if p.origin == "hook"}
    assert set(by_question) == set(injected)
    for question, (answer, right) in injected.items():
        pair = by_question[question]
        assert pair.answer == answer.strip()
        expected = "accepted" if right else "rejected"
        assert pair.status == expected, (question, pair.status, pair.feedback)
        if right:
            assert pair.spans, "a correct paraphrase keeps the source spans it rests on"
            assert all(re.sub(r"\s+", " ", s.text) for s in pair.spans)
