"""Deterministic constraint checks: apply spec rules to a question or answer, no LLM needed.

Every rule kind except `topic` is checked here: regex, keyword, pii, max_words, min_words and
language. `topic` rules need an LLM judge; `is_llm_rule` says which rules those are, and
`check_rule` refuses them so that an LLM rule is never silently passed.

Semantics, from `personagen.state.spec.ConstraintRule`: in `filter_out` a rule is violated
when it matches, in `check_for` when it does not; `max_words` and `min_words` mean the same in
both lists. A rule "matches" when its regex is found (`re` syntax, run by the `regex` package
so a runaway match stops after 1 s and is reported; case-insensitive unless
`case_sensitive`), when any of its keywords occurs as a whole word or phrase, when any PII of
its kinds is found, or when the text is in its language. Language verdicts lean towards
passing: in `check_for` the text fails only when another language is detected with
confidence, in `filter_out` only when the forbidden one is, and text too short to judge
never fails.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache

import regex

from personagen.evaluators.language import (
    MIN_CONFIDENCE,
    detect_language,
    is_language,
    language_name,
    normalize_code,
)
from personagen.evaluators.pii import KIND_NAMES, PiiMatch, find_pii, mask
from personagen.state.results import FieldName, ListName, Violation
from personagen.state.spec import PII_KINDS, ConstraintRule, Constraints

LLM_KINDS = frozenset({"topic"})
PLUGIN_KINDS = frozenset({"plugin"})
"""Rule kinds that need an LLM judge and are not handled in this module."""
DETERMINISTIC_KINDS = frozenset({"regex", "keyword", "pii", "max_words", "min_words", "language"})
"""Rule kinds `check_rule` handles."""

_MAX_EVIDENCE = 5  # excerpts per violation: enough to act on, short enough for a prompt
_MAX_EXCERPT = 80  # characters per excerpt


def is_llm_rule(rule: ConstraintRule) -> bool:
    """Whether a rule must be judged by an LLM (a `topic` rule) rather than by `check_rule`."""
    return rule.kind in LLM_KINDS


# --- word counting -----------------------------------------------------------------------

# Han and kana have no spaces between words, and one character is about one word's worth of
# meaning, so each counts as a word. Hangul is not here: Korean puts spaces between words.
_CJK = re.compile(
    r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]"
)
# Thai, Lao, Myanmar and Khmer write words without spaces and one character is far less than
# a word; without a dictionary segmenter, a run counts as one word per few characters.
_UNSPACED = re.compile(r"[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff]+")
_CHARS_PER_UNSPACED_WORD = 4


def count_words(text: str) -> int:
    """Count the words of a text in any script.

    Whitespace-separated tokens holding a letter or digit count one each, so punctuation and
    Markdown bullets do not count and "state-of-the-art" is one word. Han and kana characters
    count one word each; runs of Thai, Lao, Myanmar or Khmer count one word per four
    characters.

    Args:
        text: Any text.

    Returns:
        The number of words.
    """
    text = unicodedata.normalize("NFC", text)
    words = len(_CJK.findall(text))
    text = _CJK.sub(" ", text)
    for run in _UNSPACED.findall(text):
        words += math.ceil(len(run) / _CHARS_PER_UNSPACED_WORD)
    text = _UNSPACED.sub(" ", text)
    return words + sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


# --- matching helpers --------------------------------------------------------------------


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_EXCERPT else text[: _MAX_EXCERPT - 1] + "…"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(item for item in items if item))[:_MAX_EVIDENCE]


def _quoted(items: list[str]) -> str:
    return ", ".join(f'"{item}"' for item in items)


# A user's pattern can backtrack catastrophically (`(a+)+$` on a long line): the `regex`
# package can stop a match after a time limit, which Python's `re` cannot.
REGEX_TIMEOUT_S = 1.0


@lru_cache(maxsize=256)
def _compiled_regex(pattern: str, case_sensitive: bool) -> regex.Pattern[str]:
    return regex.compile(pattern, 0 if case_sensitive else regex.IGNORECASE)


def _normalize_for_keywords(text: str) -> str:
    # Curly apostrophes would make "don't" miss "don’t", and an accent typed as a combining
    # mark would make "café" miss "café".
    return unicodedata.normalize("NFC", text).replace("\u2019", "'").replace("\u2018", "'")


def _has_word_boundaries(char: str) -> bool:
    # Scripts without spaces (and agglutinative Hangul, where particles attach to the word)
    # cannot be matched as whole words, so keywords in them match as substrings.
    if not (char.isalnum() or char == "_"):
        return False
    name = unicodedata.name(char, "")
    return not name.startswith(
        ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR")
    )


@lru_cache(maxsize=256)
def _keyword_pattern(keywords: tuple[str, ...], case_sensitive: bool) -> re.Pattern[str]:
    alternatives = []
    for keyword in sorted(keywords, key=len, reverse=True):
        keyword = _normalize_for_keywords(keyword.strip())
        # Any run of whitespace in the text matches the spaces of a phrase.
        body = r"\s+".join(re.escape(part) for part in keyword.split())
        if _has_word_boundaries(keyword[0]):
            body = r"(?<!\w)" + body
        if _has_word_boundaries(keyword[-1]):
            body += r"(?!\w)"
        alternatives.append(body)
    return re.compile("|".join(alternatives), 0 if case_sensitive else re.IGNORECASE)


def _describe_pii(matches: list[PiiMatch]) -> str:
    """'an email address (j***@example.com) and 2 phone numbers (+** ..., ...)'."""
    parts = []
    for kind in PII_KINDS:
        found = [m for m in matches if m.kind == kind]
        if not found:
            continue
        singular, plural = KIND_NAMES[kind]
        name = singular if len(found) == 1 else f"{len(found)} {plural}"
        shown = _unique([mask(m.text) for m in found])
        parts.append(f"{name} ({', '.join(shown)})")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


# --- one rule ----------------------------------------------------------------------------


def check_rule(
    rule: ConstraintRule, list_name: ListName, field: FieldName, text: str
) -> Violation | None:
    """Check one deterministic rule against one field's text.

    Args:
        rule: The rule; any kind but `topic`.
        list_name: The list the rule comes from, which decides whether a match is a violation
            (`filter_out`) or a requirement (`check_for`).
        field: Which field `text` is, for the reason and the violation record.
        text: The question or answer text.

    Returns:
        A violation, or None when the text satisfies the rule.

    Raises:
        ValueError: If the rule is an LLM-judged `topic` rule or `list_name` is unknown.
    """
    if is_llm_rule(rule):
        raise ValueError(
            f"rule {rule.label!r} is a {rule.kind} rule, which an LLM judges; "
            "check it with the LLM judge, not check_rule"
        )
    if list_name not in ("filter_out", "check_for"):
        raise ValueError(f"unknown constraints list {list_name!r}; use filter_out or check_for")
    forbid = list_name == "filter_out"
    reason: str | None = None
    evidence: list[str] = []

    if rule.regex is not None:
        pattern = _compiled_regex(rule.regex, rule.case_sensitive)
        try:
            found = [m.group() for m in pattern.finditer(text, timeout=REGEX_TIMEOUT_S)]
        except TimeoutError:
            # Not a pass: the text could not be checked. Say so, and what to do about it.
            return Violation(
                rule=rule.label,
                kind=rule.kind,
                list=list_name,
                field=field,
                reason=f'the pattern "{rule.regex}" did not finish within '
                f"{REGEX_TIMEOUT_S:g} s on the {field} ({len(text)} characters), so it could "
                "not be checked; the pattern backtracks catastrophically: simplify it "
                "(e.g. no alternatives that overlap under a repeat, like (a|aa)+)",
            )
        if forbid and found:
            evidence = _unique([_excerpt(f) for f in found])
            shown = f": {_quoted(evidence)}" if evidence else ""
            reason = f'{field} matches the forbidden pattern "{rule.regex}"{shown}'
        elif not forbid and not found:
            reason = f'{field} does not match the required pattern "{rule.regex}"'

    elif rule.keyword is not None:
        pattern = _keyword_pattern(tuple(rule.keyword), rule.case_sensitive)
        found = [m.group() for m in pattern.finditer(_normalize_for_keywords(text))]
        if forbid and found:
            evidence = _unique([_excerpt(f) for f in found])
            noun = "keyword" if len(evidence) == 1 else "keywords"
            reason = f"{field} contains the forbidden {noun} {_quoted(evidence)}"
        elif not forbid and not found:
            if len(rule.keyword) == 1:
                reason = f'{field} does not mention the required keyword "{rule.keyword[0]}"'
            else:
                reason = f"{field} mentions none of the required keywords {_quoted(rule.keyword)}"

    elif rule.pii is not None and rule.pii is not False:
        # `pii: []` is read as "any PII": an empty list that forbade nothing would be a trap.
        kinds = tuple(rule.pii) if isinstance(rule.pii, list) and rule.pii else PII_KINDS
        matches = find_pii(text, kinds)
        if forbid and matches:
            evidence = _unique([mask(m.text) for m in matches])
            reason = f"{field} contains {_describe_pii(matches)}"
        elif not forbid and not matches:
            names = " or ".join(KIND_NAMES[kind][0] for kind in kinds)
            reason = f"{field} contains no personal data, but must contain {names}"

    elif rule.max_words is not None:
        words = count_words(text)
        if words > rule.max_words:
            reason = f"{field} has {words} words; at most {rule.max_words} allowed"

    elif rule.min_words is not None:
        words = count_words(text)
        if words < rule.min_words:
            reason = f"{field} has {words} words; at least {rule.min_words} required"

    elif rule.language is not None:
        target = normalize_code(rule.language)
        wanted = f"{language_name(target)} ({target})"
        if forbid:
            # Only a confident detection of the forbidden language is a violation; the
            # lenient "holds a good share" acceptance of is_language is for check_for.
            code, confidence = detect_language(text)
            if code == target and confidence >= MIN_CONFIDENCE:
                reason = (
                    f"{field} is in {language_name(target)} ({target}, confidence "
                    f"{confidence:.2f}), which is not allowed"
                )
        elif is_language(text, target) is False:
            code, confidence = detect_language(text)
            reason = (
                f"{field} is in {language_name(code)} ({code}, confidence {confidence:.2f}); "
                f"it must be in {wanted}"
            )

    else:  # pragma: no cover - the spec validates that a rule has exactly one kind
        raise ValueError(f"rule {rule.label!r} has no kind this module can check")

    if reason is None:
        return None
    return Violation(
        rule=rule.label,
        kind=rule.kind,
        list=list_name,
        field=field,
        reason=reason,
        evidence=evidence,
    )


# --- one item ----------------------------------------------------------------------------


def _fields(applies_to: str, question: str, answer: str | None) -> list[tuple[FieldName, str]]:
    fields: list[tuple[FieldName, str]] = []
    if applies_to in ("question", "both"):
        fields.append(("question", question))
    if applies_to in ("answer", "both") and answer is not None:
        fields.append(("answer", answer))
    return fields


def check_item(constraints: Constraints, *, question: str, answer: str | None) -> list[Violation]:
    """Apply every deterministic rule to the fields it applies to.

    `topic` rules are skipped (see `is_llm_rule`); rules for the answer are skipped while
    there is no answer yet, so questions can be gated before answers are generated.

    Args:
        constraints: The spec's constraints.
        question: The item's question.
        answer: The item's answer, or None before it is generated.

    Returns:
        The violations, in rule order (`filter_out` first), question before answer.
    """
    violations: list[Violation] = []
    for list_name, rule in constraints.rules:
        if is_llm_rule(rule) or rule.kind in PLUGIN_KINDS:
            continue
        for field, text in _fields(rule.applies_to, question, answer):
            violation = check_rule(rule, list_name, field, text)
            if violation is not None:
                violations.append(violation)
    return violations
