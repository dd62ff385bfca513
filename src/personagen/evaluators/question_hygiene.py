"""Question hygiene: cut or reject runaway text and echoes of the prompt's own examples.

Small models (the embedded SmolLM2-135M above all) often keep writing after the question
(`How do I ...? } # 1. How do...`, `1.1.1.1...`) and copy the worked example of their prompt
("How do I turn on automatic backup on my phone?" about a home-buying guide). This module
checks one generated question at a time and says what to keep:

- *runaway text after the first question mark* is cut when it is junk (it fails the checks
  below on its own); a clean second question stays;
- a question with runaway text inside it (an enumeration like `1.1.1` or `# 1.`, a stray
  bracket, a leaked JSON key or prompt label, a fragment repeated over and over), one that is
  not a question, too short or too long, is rejected;
- a question that *echoes a prompt example* is rejected: it shares content words with one of
  the examples written in the goal's prompt templates, and those words are not in the source
  excerpt the question was drawn from (a home-buying guide that really talks about backups
  may have backup questions).

The examples are read from the templates themselves (`prompt_examples`): literal lines
`Label: value`, numbered context lines `[1] ...` and the string values of JSON written in
the template, never a hard-coded list, so a changed prompt is followed automatically.

Every verdict carries its reason as a kind (`REASONS`) plus a detail, so callers record every
removal and cut; nothing is dropped silently. Only generated questions go through here: the
user's own questions are never touched.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

from jinja2 import Environment, TemplateSyntaxError
from rapidfuzz import fuzz

from personagen.evaluators.dedup import content_words, normalize_question, same_word
from personagen.state.goal import PromptTemplate

Reason = Literal[
    "runaway text", "echoes a prompt example", "not a question", "too short", "too long"
]
REASONS: tuple[Reason, ...] = get_args(Reason)
"""Why a question can be removed (the kind; `Verdict.detail` says more)."""

MAX_CHARS = 300
"""Longest question kept (the structured output's own limit)."""
MAX_WORDS = 50
MIN_LETTERS = 8
MIN_WORDS = 3
ECHO_RATIO = 85.0
"""`token_sort_ratio` (0-100) from which a question is a copy of an example question."""

# Question marks of the scripts we see: ASCII, full-width (CJK), Arabic, inverted-reversed.
_QUESTION_MARKS = "?\uff1f\u061f\u2e2e"
# Japanese questions often end in the particle か followed by a full stop, with no "?".
_JA_QUESTION_END = re.compile(r"[かの][。.]?$")
# Scripts written without spaces between words: a question is one long "word" there.
_NO_SPACES = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\u0e00-\u0e7f]")
_LEAD_MARKER = re.compile(
    r"^\s*(?:[-*\u2022]+\s+|\d{1,2}[.)]\s+|q(?:uestion)?\s*\d*\s*[:.)]\s*)", re.IGNORECASE
)
_CODE_SPAN = re.compile(r"`[^`]*`")
_BRACKETS = {")": "(", "]": "[", "}": "{"}
# Closing marks a question may end inside (not the apostrophe: "What's" would miscount).
_CLOSERS = {'"': '"', "\u201d": "\u201c", "\u00bb": "\u00ab", ")": "("}
# Why each pattern is runaway text and not something a real question contains:
_JUNK: tuple[tuple[re.Pattern[str], str], ...] = (
    # "1.1.1.1": the same number over and over (a version "3.11.2" or an IP does not repeat)
    (re.compile(r"(\d+[.)])\s*\1\s*\1"), "a repeated enumeration"),
    (re.compile(r"(?:\d+\.){5,}"), "a runaway enumeration"),
    # "# 1." / "## 2)": a markdown heading that numbers the next item
    (re.compile(r"#+\s*\d+\s*[.):]"), "a numbered heading"),
    # "... ? 2. How ...": the model starts a list of further questions
    (re.compile(r"(?:^|\s)\d{1,2}[.)]\s+\S.*[" + _QUESTION_MARKS + r"]\s*$"), "an enumeration"),
    # the output schema's own keys
    (
        re.compile(r"[\"']?\b(?:questions?|answerable|answer|quotes)\b[\"']\s*:", re.IGNORECASE),
        "a JSON fragment",
    ),
    # a placeholder left standing alone ("the [topic]", "<name>"); code such as `d[key]`
    # has no space before its bracket
    (re.compile(r"(?:^|\s)(?:\[[^\W\d_][\w ]{0,20}\]|<[^\W\d_][\w ]{0,20}>)"), "a placeholder"),
    # one character six times in a row ("??????", "------"); an ellipsis is three dots
    (re.compile(r"([^\w\s])\1{5,}"), "a repeated character"),
    # the same word three times in a row
    (re.compile(r"\b(\w+)(?:\W+\1\b){2,}", re.IGNORECASE), "a repeated word"),
    # the same group of words twice in a row ("how do I how do I")
    (re.compile(r"\b(\w+(?:\W+\w+){1,6})\W+\1\b", re.IGNORECASE), "a repeated fragment"),
)
# Function words of questions, generic verbs and the words of any prompt's instructions:
# sharing them with an example is no sign of copying it.
_GENERIC = frozenset(
    """
    how what when where why which who whom whose much many often long need needs get gets
    use used make know want way ways thing things one ones more most not no yes really
    question questions ask person document text write example
    """.split()
)


@dataclass(frozen=True)
class Verdict:
    """What hygiene made of one question."""

    original: str
    """The question as the model wrote it."""
    question: str | None
    """The question to keep (cleaned), or None when it is rejected."""
    reason: Reason | None = None
    """Why the question was rejected; None when it is kept."""
    detail: str = ""
    """What exactly was wrong, or what was cut."""
    cut: str = ""
    """Text cut off the end of a kept question (runaway text after its question mark)."""

    @property
    def kept(self) -> bool:
        """Whether a question remains."""
        return self.question is not None

    def record(self, stage: str, **extra: Any) -> dict[str, Any] | None:
        """The entry to keep in the run's record, or None when nothing was changed.

        Args:
            stage: The node that generated the question.
            **extra: More fields for the entry (e.g. the pair id).
        """
        if self.question is not None and not self.cut:
            return None
        entry: dict[str, Any] = {
            "question": self.original,
            "action": "cut" if self.question is not None else "removed",
            "reason": self.reason or "runaway text",
            "detail": self.detail,
            "stage": stage,
        }
        if self.question is not None:
            entry["kept_as"] = self.question
        return entry | extra


@dataclass(frozen=True)
class Example:
    """A text written into a prompt template as an example."""

    text: str
    """The example's text (a question, a document, an answer)."""
    prompt: str
    """The prompt it was found in (for the record)."""

    @cached_property
    def words(self) -> frozenset[str]:
        """Its content words."""
        return frozenset(content_words(self.text) - _GENERIC)

    @cached_property
    def normalized(self) -> str:
        """Its normalized form (for the ratio against questions)."""
        return normalize_question(self.text)


_JSON = json.JSONDecoder()
_LABEL_LINE = re.compile(r"^\s*([A-Z][\w ]{0,24}):\s*(\S.*)$")
_NUMBERED_LINE = re.compile(r"^\s*\[\d+\]\s+(\S.*)$")
_MARK = "\x00"  # stands in for a Jinja expression or tag in a template's literal text


def _literal_text(source: str) -> str:
    """A template's own text, every Jinja expression and tag replaced by a marker."""
    parts: list[str] = []
    try:
        tokens = list(Environment().lex(source))
    except TemplateSyntaxError:
        return ""
    for _, kind, value in tokens:
        if kind == "data":
            parts.append(value)
        elif not parts or not parts[-1].endswith(_MARK):
            parts.append(_MARK)
    return "".join(parts)


def _json_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def _examples_in_line(line: str) -> tuple[list[str], str | None]:
    """The example texts written in one literal line, and its label (`Document:`)."""
    found: list[str] = []
    labelled = _LABEL_LINE.match(line)
    label = labelled.group(1) if labelled else None
    position = line.find("{")
    while position != -1:
        try:
            value, end = _JSON.raw_decode(line, position)
        except ValueError:
            position = line.find("{", position + 1)
            continue
        found.extend(_json_strings(value))
        line = line[:position] + line[end:]
        position = line.find("{", position)
    numbered = _NUMBERED_LINE.match(line)
    labelled = _LABEL_LINE.match(line)
    if numbered:
        found.append(numbered.group(1))
    elif labelled:
        found.append(labelled.group(2))
    return [text.strip() for text in found if text.strip()], label


def prompt_examples(templates: dict[str, PromptTemplate]) -> tuple[list[Example], set[str]]:
    """The example texts written into prompt templates, and the labels that introduce them.

    Only lines with no Jinja in them count: `Persona: {{ persona_short }}` is where the real
    persona goes, `Persona: Tom, a retired teacher` is an example.

    Args:
        templates: Prompt templates by name (both their variants are read).

    Returns:
        The examples (deduplicated, in order) and the labels (`Document`, `JSON`, ...).
    """
    examples: dict[str, Example] = {}
    labels: set[str] = set()
    for name, template in templates.items():
        for part in (template, template.embedded):
            if part is None:
                continue
            for source in (part.system, part.user):
                for line in _literal_text(source).splitlines():
                    if _MARK in line:
                        continue
                    texts, label = _examples_in_line(line)
                    if label and texts:
                        labels.add(label)
                    for text in texts:
                        examples.setdefault(text, Example(text=text, prompt=name))
    return list(examples.values()), labels


def goal_examples(prompts: dict[str, PromptTemplate]) -> tuple[list[Example], set[str]]:
    """`prompt_examples` of a goal's prompts plus the prompts shared by every goal."""
    from personagen.prompts.library import shared_prompts

    return prompt_examples({**shared_prompts(), **prompts})


def _unbalanced(text: str) -> str | None:
    """The first bracket without its partner, outside `code spans`."""
    stack: list[str] = []
    for char in _CODE_SPAN.sub(" ", text):
        if char in "([{":
            stack.append(char)
        elif char in _BRACKETS:
            if not stack or stack[-1] != _BRACKETS[char]:
                return char
            stack.pop()
    return stack[0] if stack else None


def _ends_as_question(text: str) -> bool:
    stripped = text.rstrip(" \"'\u201d\u2019\u00bb)")
    return bool(stripped) and (
        stripped[-1] in _QUESTION_MARKS or bool(_JA_QUESTION_END.search(stripped))
    )


def _first_question_end(text: str) -> int:
    """Index just after the first question mark (and a quote or bracket it closes), or -1."""
    for index, char in enumerate(text):
        if char in _QUESTION_MARKS:
            end = index + 1
            # 'Is it "safe?"' keeps its closing quote; 'Is it safe?"}' loses the stray one.
            while end < len(text) and text[end] in _CLOSERS:
                opener = _CLOSERS[text[end]]
                inside = text[:end]
                closed = (
                    inside.count(opener) % 2 == 1
                    if opener == text[end]
                    else inside.count(opener) > inside.count(text[end])
                )
                if not closed:
                    break
                end += 1
            return end
    return -1


@dataclass
class QuestionHygiene:
    """Checks generated questions against runaway text and a goal's prompt examples."""

    examples: list[Example] = field(default_factory=list)
    """Texts the prompts show as examples (see `prompt_examples`)."""
    labels: set[str] = field(default_factory=set)
    """Labels the prompts introduce examples with (`Document`): leaked into a question, they
    are runaway text."""

    @classmethod
    def for_goal(cls, prompts: dict[str, PromptTemplate]) -> QuestionHygiene:
        """Hygiene against the examples of a goal's prompts (and the shared prompts)."""
        examples, labels = goal_examples(prompts)
        return cls(examples=examples, labels=labels)

    def check(self, question: str, source: str = "") -> Verdict:
        """Clean one generated question, or reject it with its reason.

        Args:
            question: The question as the model wrote it.
            source: The excerpt it was generated from; an example's words found there are
                the document's own words, not an echo.

        Returns:
            The verdict: the question to keep (maybe with runaway text cut off), or why not.
        """
        text = " ".join(unicodedata.normalize("NFC", question).split())
        text = _LEAD_MARKER.sub("", text, count=1).strip()
        if (
            len(text) >= 2
            and text[0] == text[-1]
            and text[0] in "\"'"
            and text[0] not in text[1:-1]
        ):
            text = text[1:-1].strip()  # the whole question in quotes
        cut, cut_detail = "", ""
        end = _first_question_end(text)
        if 0 < end < len(text):
            head, tail = text[:end].strip(), text[end:].strip()
            problem = self._problem(tail, source)
            if problem is not None:
                cut, cut_detail = tail, f"cut after the question mark ({problem[0]}: {problem[1]})"
                text = head
            elif normalize_question(tail) == normalize_question(head):
                cut, cut_detail = tail, "cut after the question mark (the question repeated)"
                text = head
        problem = self._problem(text, source)
        if problem is not None:
            return Verdict(original=question, question=None, reason=problem[0], detail=problem[1])
        return Verdict(original=question, question=text, detail=cut_detail, cut=cut)

    def _problem(self, text: str, source: str) -> tuple[Reason, str] | None:
        """Why `text` cannot be a question, or None."""
        if not text:
            return "too short", "empty"
        for pattern, what in _JUNK:
            found = pattern.search(text)
            if found:
                return "runaway text", f"{what}: {found.group(0)[:40]!r}"
        bracket = _unbalanced(text)
        if bracket is not None:
            return "runaway text", f"a stray {bracket!r}"
        for label in self.labels:
            if re.search(rf"\b{re.escape(label)}\s*:", text):
                return "runaway text", f"the prompt's label {label + ':'!r}"
        if not _ends_as_question(text):
            return "not a question", "does not end with a question mark"
        letters = sum(ch.isalpha() for ch in text)
        words = len(text.split())
        if letters < MIN_LETTERS or (words < MIN_WORDS and not _NO_SPACES.search(text)):
            return "too short", f"{words} word(s)"
        if len(text) > MAX_CHARS or words > MAX_WORDS:
            return "too long", f"{len(text)} characters, {words} words"
        echo = self.echo_of(text, source)
        if echo is not None:
            return "echoes a prompt example", echo
        return None

    def echo_of(self, text: str, source: str = "") -> str | None:
        """Which prompt example `text` echoes (its words and the example), or None.

        Args:
            text: A question.
            source: The excerpt it was drawn from: words found there are no echo.
        """
        words = content_words(text) - _GENERIC
        if not words or not self.examples:
            return None
        in_source = content_words(source) if source else set()
        normalized = normalize_question(text)
        # An echo mixes pieces of one prompt's worked example (its document, its questions,
        # its answers): compare with each prompt's examples together.
        scenes: dict[str, set[str]] = {}
        for example in self.examples:
            scenes.setdefault(example.prompt, set()).update(example.words)
        for prompt, scene in scenes.items():
            shared = {w for w in words if same_word(w, scene)}
            foreign = sorted(w for w in shared if not same_word(w, in_source))
            if not foreign:
                continue
            # Half the question's own words come from the example and not from the source;
            # a copy of an example question needs only one such word.
            copied = max(
                fuzz.token_sort_ratio(normalized, e.normalized)
                for e in self.examples
                if e.prompt == prompt
            )
            if 2 * len(foreign) >= len(words) and (copied >= ECHO_RATIO or len(foreign) >= 2):
                return f"words {', '.join(foreign)} from the example of the {prompt!r} prompt"
        return None
