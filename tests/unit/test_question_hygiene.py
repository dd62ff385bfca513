"""Question hygiene: runaway text cut or rejected, prompt-example echoes rejected, good kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from personagen.api import arun
from personagen.evaluators.question_hygiene import (
    REASONS,
    QuestionHygiene,
    prompt_examples,
)
from personagen.llm.fake import FakeChatModel, FakeRequest
from personagen.prompts.library import load_goal_definition
from personagen.state.goal import PromptTemplate

HOME = (
    "Most lenders ask for a deposit of at least 5% of the price. The lender values the "
    "property and checks your documents: pay slips, bank statements and your credit report. "
    "A pre-approval letter is valid for 60 to 90 days. Closing costs add 2% to 5%."
)
CODE = (
    'Check `hasattr(sys, "real_prefix")` to detect a virtualenv. Windows paths such as '
    "C:\\Users\\build\\venv need raw strings. Indent with four spaces; tabs are never allowed."
)
PHONE = (
    "To back up your phone, open Settings and tap Backup. Automatic backup saves your photos "
    "and contacts every night; backups are stored in your cloud account."
)


# The embedded question prompt of issue 15's runs, whose worked example the model copied.
ISSUE_15_PROMPT = PromptTemplate(
    system="You write questions a specific person would ask about a document. Reply in JSON.",
    user=(
        "Example.\n"
        "Persona: Tom, a retired teacher, new to smartphones\n"
        "Document: To back up your phone, open Settings and tap Backup. Turn on automatic "
        "backup to save your photos and contacts every night while the phone is charging and "
        "connected to Wi-Fi. Backups are stored in your cloud account, which includes 15 GB of "
        "free space.\n"
        'JSON: {"questions": [{"question": "How do I turn on automatic backup on my phone?"}, '
        '{"question": "Does the backup save my photos and contacts?"}, {"question": "How much '
        'free space does my cloud account have?"}]}\n\n'
        "Persona: {{ persona_short }}\n"
        "Document: {{ excerpt }}\n"
    ),
)


@pytest.fixture(scope="module")
def hygiene() -> QuestionHygiene:
    goal, _ = load_goal_definition("qa")
    return QuestionHygiene.for_goal({**goal.prompts, "issue_15": ISSUE_15_PROMPT})


# What the embedded model wrote in the runs of issue 15, and its kin.
CUT = [
    ("How do I get pre-approved? } # 1. How do I", "How do I get pre-approved?"),
    ("How much is the deposit? 1.1.1.1.1.1.1.1.1.1.1", "How much is the deposit?"),
    ('How long is the letter valid?"}, {"question": "What', "How long is the letter valid?"),
    ("What does the lender check? What does the lender check?", "What does the lender check?"),
    ("What are closing costs? 2. How do I pay them?", "What are closing costs?"),
    ("How long is the letter valid? ######", "How long is the letter valid?"),
    ("What are closing costs? The answer is below", "What are closing costs?"),
]


@pytest.mark.parametrize(("raw", "kept"), CUT)
def test_runaway_tail_is_cut_and_recorded(hygiene: QuestionHygiene, raw: str, kept: str) -> None:
    verdict = hygiene.check(raw, source=HOME)
    assert verdict.question == kept
    assert verdict.cut and verdict.detail.startswith("cut after the question mark")
    record = verdict.record("generate_questions", excerpt="e1")
    assert record is not None
    assert record["action"] == "cut" and record["question"] == raw and record["kept_as"] == kept
    assert record["excerpt"] == "e1" and record["reason"] in REASONS


REJECTED = [
    ("1.1.1.1.1.1.1.1", "runaway text"),
    ("What is the deposit 1.1.1.1.1.1?", "runaway text"),
    ("} # 1. How do I apply for a mortgage?", "runaway text"),
    ('{"question": "How much is the deposit?"', "runaway text"),
    ('"questions": [{"question": "How much is the deposit?"}]', "runaway text"),
    ("How much is the deposit for a [flat?", "runaway text"),
    ("How do I how do I pay the deposit?", "runaway text"),
    ("What is the the the deposit?", "runaway text"),
    ("What is the purpose of the [topic]?", "runaway text"),
    ("How much is the deposit for <property type>?", "runaway text"),
    ("Document: Most lenders ask for a deposit?", "runaway text"),
    ("The lender values the property and checks your documents.", "not a question"),
    ("Deposit?", "too short"),
    ("", "too short"),
    (
        "Could you explain in plain words, step by step, which documents the lender wants to see "
        "from a nurse on rotating shifts with overtime, night bonuses, a second part-time job, "
        "savings held abroad, a car loan, two credit cards, a student loan that is nearly paid "
        "off, and a parent who might give part of the deposit as a gift next spring?",
        "too long",
    ),
    # The worked example of the embedded prompt, copied or paraphrased, about home buying:
    ("How do I turn on automatic backup on my phone?", "echoes a prompt example"),
    ("Does the backup save my photos and contacts?", "echoes a prompt example"),
    ("How much free space does my cloud account have?", "echoes a prompt example"),
    ("Can my phone back up my photos automatically every night?", "echoes a prompt example"),
    ("Where are my backups stored?", "echoes a prompt example"),
    ("How much does extra cloud storage cost?", "echoes a prompt example"),  # answer prompt
    # pieces of two examples of one prompt
    ("How do I set up a cloud storage account for my data?", "echoes a prompt example"),
    ("What does a retired teacher need to know about smartphones?", "echoes a prompt example"),
]


@pytest.mark.parametrize(("raw", "reason"), REJECTED)
def test_bad_questions_rejected_with_reason(
    hygiene: QuestionHygiene, raw: str, reason: str
) -> None:
    verdict = hygiene.check(raw, source=HOME)
    assert verdict.question is None
    assert verdict.reason == reason and verdict.detail
    record = verdict.record("refine", pair="q1")
    assert record == {
        "question": raw,
        "action": "removed",
        "reason": reason,
        "detail": verdict.detail,
        "stage": "refine",
        "pair": "q1",
    }


GOOD = [
    ("How much deposit do I need to buy my first flat?", HOME),
    ("What does pre-approval mean, and how long is it valid?", HOME),
    ('What does "pre-approval" mean for my offer?', HOME),
    ("Is it safe to rely on the lender's valuation?", HOME),
    ("What is a deposit? How much do I need for a flat?", HOME),
    ('Why does `hasattr(sys, "real_prefix")` tell me I am in a virtualenv?', CODE),
    ("How do I write C:\\Users\\build\\venv in a Python string?", CODE),
    ('What does `{"key": [1, 2]}` become after json.loads()?', CODE),
    ("Why does `d[key]` raise KeyError when the key is missing?", CODE),
    ("Why does d[key] raise KeyError when the key is missing?", CODE),
    ("Does List[int] accept a tuple?", CODE),
    ("What changed between Python 3.11.2 and 3.12?", CODE),
    ("How do I open the router page at 192.168.0.1?", HOME),
    ("Wie viel Eigenkapital brauche ich für den Kauf einer Wohnung?", HOME),
    ("¿Cuánto dinero necesito para la entrada de un piso?", HOME),
    ("頭金はいくら必要ですか？", HOME),
    ("住宅ローンの審査には何が必要ですか。", HOME),
    ("كم يجب أن أدفع كدفعة أولى لشراء شقة؟", HOME),
    # The example's own topic is no echo when the source really talks about it:
    ("How do I turn on automatic backup on my phone?", PHONE),
    ("Where are my backups stored?", PHONE),
    # The persona reads on her phone; one shared word is not an echo:
    ("Can I read my mortgage documents on my phone?", HOME),
]


@pytest.mark.parametrize(("question", "source"), GOOD)
def test_good_questions_survive_unchanged(
    hygiene: QuestionHygiene, question: str, source: str
) -> None:
    verdict = hygiene.check(question, source=source)
    assert verdict.question == question, verdict.detail
    assert verdict.record("generate_questions") is None


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("1. How much is the deposit?", "How much is the deposit?"),
        ("- How much is the deposit?", "How much is the deposit?"),
        ('"How much is the deposit?"', "How much is the deposit?"),
        ("  How much is\nthe   deposit?  ", "How much is the deposit?"),
    ],
)
def test_list_markers_quotes_and_whitespace_are_tidied(
    hygiene: QuestionHygiene, raw: str, kept: str
) -> None:
    assert hygiene.check(raw, source=HOME).question == kept


def test_examples_come_from_the_templates_not_a_list() -> None:
    template = PromptTemplate(
        system="You write questions. Reply in JSON.",
        user=(
            "Example.\n"
            "Persona: Ana, a beekeeper\n"
            "Document: Hives need inspecting every week in spring.\n"
            'JSON: {"questions": [{"question": "How often should I inspect my hives?"}]}\n'
            "Persona: {{ persona_short }}\n"
            "Document: {{ excerpt }}\n"
        ),
    )
    examples, labels = prompt_examples({"generate_questions": template})
    texts = [e.text for e in examples]
    assert texts == [
        "Ana, a beekeeper",
        "Hives need inspecting every week in spring.",
        "How often should I inspect my hives?",
    ]
    assert labels == {"Persona", "Document", "JSON"}
    hygiene = QuestionHygiene(examples=examples, labels=labels)
    assert hygiene.check("How often do I inspect the hives?", HOME).reason == (
        "echoes a prompt example"
    )
    assert hygiene.check("How often do I inspect the hives?", "Inspect hives weekly.").kept
    # the phone example is not in this prompt: no echo
    assert hygiene.check("Where are my backups stored?", HOME).kept


def test_library_prompt_examples_are_found() -> None:
    goal, _ = load_goal_definition("qa")
    hygiene = QuestionHygiene.for_goal(goal.prompts)
    texts = [e.text for e in hygiene.examples]
    # the answer prompt's worked examples are there; no instruction line with a template
    # variable in it is taken for an example
    assert "How much does extra cloud storage cost?" in texts
    assert not any("{{" in t or "\x00" in t for t in texts)
    # the small model's question prompt carries no topical example any more (issue 15)
    assert not [e for e in hygiene.examples if e.prompt == "generate_questions"]


async def test_run_records_every_removal_and_keeps_custom_questions(
    tmp_path: Path, make_spec: Any
) -> None:
    # The model writes one good question, one with a runaway tail, one echo of the prompt's
    # example and one bit of JSON; the user's own (odd-looking) question is never touched.
    written = [
        "How much deposit do lenders ask for?",
        "What does the lender check? } # 1. How do",
        "How much free space does my cloud account have?",
        '"questions": [{"question": "',
    ]

    def questions(request: FakeRequest) -> dict[str, Any]:
        return {"questions": [{"question": q} for q in written]}

    model = FakeChatModel(responders={"QuestionsOut": questions})
    custom = "deposit 1.1.1.1 } ok"
    spec = make_spec(
        persona={"custom_questions": [custom]},
        goal={"params": {"num_questions": 2}},
        run={"max_iterations": 1, "cache": False},
    )
    result = await arun(
        spec, chat_model=model, out_dir=tmp_path / "out", state_dir=tmp_path / "state"
    )

    assert result.status == "done"
    questions_kept = sorted(p.question for p in result.pairs.values())
    assert questions_kept == sorted(
        [custom, "How much deposit do lenders ask for?", "What does the lender check?"]
    )
    metadata = result.metadata
    removed = metadata["questions_removed"]
    by_action = {(r["action"], r["reason"]) for r in removed}
    assert ("cut", "runaway text") in by_action
    assert ("removed", "echoes a prompt example") in by_action
    assert ("removed", "runaway text") in by_action
    assert all(r["stage"] == "generate_questions" and r["detail"] for r in removed)
    assert metadata["counts"]["questions_removed"] == sum(
        1 for r in removed if r["action"] == "removed"
    )


async def test_replacement_questions_pass_the_same_hygiene(tmp_path: Path, make_spec: Any) -> None:
    judged: set[str] = set()

    def persona_fit(request: FakeRequest) -> dict[str, Any]:
        question = request.tag("question")[0]
        first = question not in judged
        judged.add(question)
        return {"reason": "not her question", "question_fit": 1 if first else 5, "answer_fit": 5}

    model = FakeChatModel(
        responders={
            "PersonaFitOut": persona_fit,
            "ReplacementQuestionOut": lambda r: {
                "question": "How much free space does my cloud account have? 1.1.1.1.1"
            },
        }
    )
    spec = make_spec(goal={"params": {"num_questions": 2}}, run={"cache": False})
    result = await arun(
        spec, chat_model=model, out_dir=tmp_path / "out", state_dir=tmp_path / "state"
    )

    assert model.calls_for("ReplacementQuestionOut")
    assert all("cloud" not in p.question for p in result.pairs.values())
    from_refine = [r for r in result.metadata["questions_removed"] if r["stage"] == "refine"]
    assert from_refine and {r["pair"] for r in from_refine} <= set(result.pairs)
    assert all(r["reason"] == "echoes a prompt example" for r in from_refine)
