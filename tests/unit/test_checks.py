"""Deterministic constraint checks: every rule kind in both lists, and applies_to handling."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from personagen.evaluators.checks import (
    DETERMINISTIC_KINDS,
    LLM_KINDS,
    PLUGIN_KINDS,
    check_item,
    check_rule,
    count_words,
    is_llm_rule,
)
from personagen.state.results import ListName, Violation
from personagen.state.spec import ConstraintKind, ConstraintRule, Constraints

EN = "How do I apply for a mortgage as a first-time buyer in Germany?"
DE = "Wie beantrage ich als Erstkäufer in Deutschland eine Hypothek?"


def rule(**fields: Any) -> ConstraintRule:
    return ConstraintRule.model_validate(fields)


# (rule fields, text, does the rule match the text?)
MATCHING = [
    # regex, with the case flag
    ({"regex": r"\bguarantee[ds]?\b"}, "Returns are guaranteed.", True),
    ({"regex": r"\bguarantee[ds]?\b"}, "Returns are GUARANTEED.", True),
    ({"regex": r"\bguarantee[ds]?\b", "case_sensitive": True}, "Returns are GUARANTEED.", False),
    ({"regex": r"\bguarantee[ds]?\b"}, "Returns vary.", False),
    ({"regex": r"^\d+ steps"}, "3 steps to follow", True),
    # keyword: whole words and phrases, case per flag
    ({"keyword": "bitcoin"}, "Is Bitcoin a good idea?", True),
    ({"keyword": "bitcoin", "case_sensitive": True}, "Is Bitcoin a good idea?", False),
    ({"keyword": "bit"}, "Is Bitcoin a good idea?", False),
    ({"keyword": "bit"}, "Wait a bit.", True),
    ({"keyword": ["crypto", "stock tips"]}, "No stock\n  tips here", True),
    ({"keyword": ["crypto", "stock tips"]}, "stocks and tips", False),
    ({"keyword": "don't"}, "You don’t need that.", True),
    ({"keyword": "C++"}, "Written in C++ and Rust.", True),
    ({"keyword": "e-mail"}, "Send an e-mail.", True),
    ({"keyword": "e-mail"}, "Send an email.", False),
    ({"keyword": "café"}, "Im Cafe\u0301 um die Ecke", True),  # decomposed accent
    ({"keyword": "抵押"}, "抵押贷款的利率是多少？", True),  # no word boundaries in Chinese
    ({"keyword": "대출"}, "주택담보대출을 신청하나요?", True),  # particles attach in Korean
    # pii: all kinds or the listed ones
    ({"pii": True}, "Mail me at anna@example.com", True),
    ({"pii": True}, "No personal data in here.", False),
    ({"pii": ["phone"]}, "Mail me at anna@example.com", False),
    ({"pii": ["phone", "email"]}, "Mail me at anna@example.com", True),
    ({"pii": ["ssn"]}, "SSN 123-45-6789", True),
    ({"pii": ["credit_card"]}, "ISBN 978-3-16-148410-0", False),
    # language
    ({"language": "en"}, EN, True),
    ({"language": "de"}, EN, False),
    ({"language": "de"}, DE, True),
    ({"language": "en-GB"}, EN, True),
]


@pytest.mark.parametrize(("fields", "text", "matches"), MATCHING)
def test_filter_out_violated_when_rule_matches(
    fields: dict[str, Any], text: str, matches: bool
) -> None:
    violation = check_rule(rule(**fields), "filter_out", "answer", text)
    assert (violation is not None) is matches


@pytest.mark.parametrize(("fields", "text", "matches"), MATCHING)
def test_check_for_violated_when_rule_does_not_match(
    fields: dict[str, Any], text: str, matches: bool
) -> None:
    violation = check_rule(rule(**fields), "check_for", "answer", text)
    assert (violation is None) is matches


@pytest.mark.parametrize("list_name", ["filter_out", "check_for"])
@pytest.mark.parametrize(
    ("fields", "text", "violated"),
    [
        ({"max_words": 5}, "one two three four five", False),
        ({"max_words": 5}, "one two three four five six", True),
        ({"min_words": 3}, "one two three", False),
        ({"min_words": 3}, "one two", True),
        ({"max_words": 5}, "如何申请抵押贷款", True),  # 8 Han characters count as 8 words
        ({"min_words": 2}, "— - * |", True),  # punctuation is not words
    ],
)
def test_length_rules_mean_the_same_in_both_lists(
    list_name: ListName, fields: dict[str, Any], text: str, violated: bool
) -> None:
    violation = check_rule(rule(**fields), list_name, "answer", text)
    assert (violation is not None) is violated


@pytest.mark.parametrize("list_name", ["filter_out", "check_for"])
@pytest.mark.parametrize("text", ["", "ok", "Danke!", "What is X?"])
def test_language_rule_passes_text_too_short_to_judge(list_name: ListName, text: str) -> None:
    for code in ("en", "de"):
        assert check_rule(rule(language=code), list_name, "question", text) is None


def test_violation_record() -> None:
    violation = check_rule(rule(max_words=120, name="short"), "check_for", "answer", "w " * 143)
    assert violation == Violation(
        rule="short",
        kind="max_words",
        list="check_for",
        field="answer",
        reason="answer has 143 words; at most 120 allowed",
        evidence=[],
    )


@pytest.mark.parametrize(
    ("fields", "list_name", "text", "reason"),
    [
        ({"min_words": 20}, "check_for", "too short", "answer has 2 words; at least 20 required"),
        (
            {"pii": ["email"]},
            "filter_out",
            "write to jane@example.com",
            "answer contains an email address (j***@example.com)",
        ),
        (
            {"pii": True},
            "filter_out",
            "a@example.com, b@example.org, +44 20 7946 0958",
            "answer contains 2 email addresses (a***@example.com, b***@example.org) and "
            "a phone number (+** ** **** *958)",
        ),
        (
            {"keyword": ["bitcoin", "ether"]},
            "filter_out",
            "Bitcoin and bitcoin",
            'answer contains the forbidden keywords "Bitcoin", "bitcoin"',
        ),
        (
            {"keyword": "disclaimer"},
            "check_for",
            "no such word",
            'answer does not mention the required keyword "disclaimer"',
        ),
        (
            {"keyword": ["risk", "disclaimer"]},
            "check_for",
            "nothing",
            'answer mentions none of the required keywords "risk", "disclaimer"',
        ),
        (
            {"regex": r"\d+%"},
            "filter_out",
            "up 5% and 7%",
            'answer matches the forbidden pattern "\\d+%": "5%", "7%"',
        ),
        (
            {"regex": r"\d+%"},
            "check_for",
            "no numbers",
            'answer does not match the required pattern "\\d+%"',
        ),
        (
            {"pii": ["phone", "email"]},
            "check_for",
            "nothing personal",
            "answer contains no personal data, but must contain a phone number or an email address",
        ),
    ],
)
def test_reasons(fields: dict[str, Any], list_name: ListName, text: str, reason: str) -> None:
    violation = check_rule(rule(**fields), list_name, "answer", text)
    assert violation is not None
    assert violation.reason == reason


def test_language_reasons() -> None:
    wrong = check_rule(rule(language="de"), "check_for", "answer", EN)
    assert wrong is not None
    assert wrong.reason.startswith("answer is in English (en, confidence ")
    assert wrong.reason.endswith("; it must be in German (de)")
    forbidden = check_rule(rule(language="en"), "filter_out", "question", EN)
    assert forbidden is not None
    assert forbidden.reason.startswith("question is in English (en, confidence ")
    assert forbidden.reason.endswith("), which is not allowed")


def test_pii_evidence_is_masked() -> None:
    text = "Card 4111 1111 1111 1111, SSN 123-45-6789, mail anna.berg@example.com"
    violation = check_rule(rule(pii=True), "filter_out", "answer", text)
    assert violation is not None
    dumped = violation.model_dump_json()
    for secret in ("4111 1111 1111 1111", "123-45-6789", "anna.berg@"):
        assert secret not in dumped
    assert violation.evidence == ["**** **** **** 1111", "***-**-**89", "a***@example.com"]


def test_evidence_is_short_and_unique() -> None:
    violation = check_rule(rule(regex=r"x+"), "filter_out", "answer", " ".join(["x"] * 50))
    assert violation is not None
    assert violation.evidence == ["x"]
    long = check_rule(rule(regex=r"y+"), "filter_out", "answer", "y" * 500)
    assert long is not None
    assert len(long.evidence[0]) <= 80


def test_empty_pii_list_means_all_kinds() -> None:
    assert check_rule(rule(pii=[]), "filter_out", "answer", "anna@example.com") is not None


def test_topic_rules_are_left_to_the_llm() -> None:
    topic = rule(topic="investment advice")
    assert is_llm_rule(topic)
    assert not is_llm_rule(rule(max_words=3))
    with pytest.raises(ValueError, match="LLM"):
        check_rule(topic, "filter_out", "answer", "Buy stocks.")


def test_every_kind_is_classified() -> None:
    all_kinds = set(get_args(ConstraintKind))
    assert DETERMINISTIC_KINDS | LLM_KINDS | PLUGIN_KINDS == all_kinds
    assert not DETERMINISTIC_KINDS & LLM_KINDS
    assert not (DETERMINISTIC_KINDS | LLM_KINDS) & PLUGIN_KINDS


def test_unknown_list_is_an_error() -> None:
    with pytest.raises(ValueError, match="filter_out or check_for"):
        check_rule(rule(max_words=3), "must_have", "answer", "x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", 0),
        ("Hello, world — it's state-of-the-art!", 4),
        ("  spaced\tout\nwords  ", 3),
        ("- item\n- item two\n1. three", 5),
        ("如何申请抵押贷款？", 8),
        ("住宅ローン", 5),
        ("Use 抵押贷款 now", 6),
        ("처음 집을 사는 사람은", 4),
        ("ภาษาไทยเป็นภาษาที่สวยงาม", 6),
        ("e.g. 3.14 is π", 4),
    ],
)
def test_count_words(text: str, words: int) -> None:
    assert count_words(text) == words


# --- check_item --------------------------------------------------------------------------


def constraints(**lists: list[dict[str, Any]]) -> Constraints:
    return Constraints.model_validate(lists)


@pytest.mark.parametrize(
    ("applies_to", "fields"),
    [("question", ["question"]), ("answer", ["answer"]), ("both", ["question", "answer"])],
)
def test_applies_to(applies_to: str, fields: list[str]) -> None:
    spec = constraints(filter_out=[{"keyword": "bitcoin", "applies_to": applies_to}])
    violations = check_item(spec, question="Bitcoin?", answer="Bitcoin.")
    assert [v.field for v in violations] == fields


def test_answer_rules_skipped_without_answer() -> None:
    spec = constraints(
        filter_out=[{"keyword": "bitcoin", "applies_to": "both"}],
        check_for=[{"min_words": 50}],
    )
    violations = check_item(spec, question="Bitcoin?", answer=None)
    assert [(v.list, v.field) for v in violations] == [("filter_out", "question")]


def test_check_item_skips_topic_and_orders_violations() -> None:
    spec = constraints(
        filter_out=[
            {"topic": "investment advice", "applies_to": "both"},
            {"pii": True, "applies_to": "both"},
            {"max_words": 5},
        ],
        check_for=[{"keyword": "disclaimer"}, {"language": "en", "applies_to": "both"}],
    )
    violations = check_item(
        spec,
        question="Can I email you at anna@example.com about my mortgage application?",
        answer=DE,
    )
    assert [(v.list, v.kind, v.field) for v in violations] == [
        ("filter_out", "pii", "question"),
        ("filter_out", "max_words", "answer"),
        ("check_for", "keyword", "answer"),
        ("check_for", "language", "answer"),
    ]


def test_clean_item_has_no_violations() -> None:
    spec = constraints(
        filter_out=[{"pii": True, "applies_to": "both"}, {"regex": "guarantee"}],
        check_for=[{"language": "en", "applies_to": "both"}, {"min_words": 5}],
    )
    answer = "Start by comparing offers from several lenders and check the total cost."
    assert check_item(spec, question=EN, answer=answer) == []


def test_empty_constraints() -> None:
    assert check_item(Constraints(), question="anything", answer="at all") == []


@pytest.mark.parametrize("list_name", ["filter_out", "check_for"])
def test_a_catastrophic_pattern_is_stopped_and_reported_not_passed(
    list_name: ListName, monkeypatch: pytest.MonkeyPatch
) -> None:
    import personagen.evaluators.checks as checks

    monkeypatch.setattr(checks, "REGEX_TIMEOUT_S", 0.05)
    text = "a" * 40 + "!"  # (a|aa)+$ tries every split of the a's: ~fib(40) ways
    violation = check_rule(rule(regex=r"(a|aa)+$"), list_name, "answer", text)
    assert violation is not None
    assert "did not finish within 0.05 s" in violation.reason
    assert "(a|aa)+$" in violation.reason and "41 characters" in violation.reason


def test_an_invalid_pattern_is_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"invalid regular expression '\(unclosed'"):
        rule(regex="(unclosed")
