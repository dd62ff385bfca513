"""Typed outputs of every LLM call PersonaGen makes (structured output models).

Bounds (`max_length`, `max_items`) keep grammar-constrained generation by small local models
finite, and tell strong models how much to write.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, create_model

from personagen.llm._text import sentences


class PersonaProfileOut(BaseModel):
    """A persona profile extracted from a bare description."""

    role: str = Field(description="Their occupation or role, in a few words.", max_length=120)
    expertise: Literal["novice", "intermediate", "expert"] = Field(
        description="Their level of knowledge in the subject of the data."
    )
    goals: list[str] = Field(description="What they want to achieve, short phrases.", max_length=5)
    pain_points: list[str] = Field(
        description="What worries or blocks them, short phrases.", max_length=5
    )
    style: str = Field(description="How they like information presented.", max_length=200)


class GeneratedQuestion(BaseModel):
    """One question the persona would ask."""

    question: str = Field(
        description="A question in the persona's own words, answerable from the excerpt.",
        max_length=300,
    )


class QuestionsOut(BaseModel):
    """Questions generated from one excerpt."""

    questions: list[GeneratedQuestion] = Field(
        description="The questions, each different from the others.", max_length=10
    )


class AnswerOut(BaseModel):
    """An answer grounded in the given context passages."""

    answerable: bool = Field(description="True only if the context passages contain the answer.")
    answer: str = Field(
        description="The answer for the persona, using only the context passages; "
        "empty when not answerable.",
        max_length=700,
    )
    quotes: list[str] = Field(
        description="Sentences copied word for word from the context passages that support "
        "the answer.",
        max_length=3,
    )


class PersonaFitOut(BaseModel):
    """The persona-fit judgement of one question/answer pair."""

    reason: str = Field(description="One or two sentences explaining the scores.", max_length=400)
    question_fit: int = Field(
        description="1-5: how likely this persona is to ask this question.", ge=1, le=5
    )
    answer_fit: int = Field(
        description="1-5: how well the answer suits the persona's level, needs and language.",
        ge=1,
        le=5,
    )


class TopicJudgeOut(BaseModel):
    """Whether a text matches a topic rule."""

    reason: str = Field(description="One sentence explaining the verdict.", max_length=300)
    matches: bool = Field(description="True if the text matches the rule's description.")


class ReplacementQuestionOut(BaseModel):
    """A new question replacing one that failed review or judging."""

    question: str = Field(
        description="A new question this persona would ask, answerable from the excerpt.",
        max_length=300,
    )


MAX_EXTRACTIVE_SENTENCES = 24
MAX_SENTENCE_CHARS = 400
MIN_SENTENCE_CHARS = 12
MIN_SENTENCE_WORDS = 4
_HEADING = re.compile(r"^\s*(?:#{1,6}\s|[=\-~^*+`'\"#.:_]{3,}\s*$)")


def is_heading(line: str) -> bool:
    """A Markdown `#` heading or a reStructuredText underline/overline."""
    return bool(_HEADING.match(line))


def candidate_sentences(contexts: list[str]) -> list[str]:
    """The contexts' sentences an extractive answer may quote (whitespace collapsed).

    A "sentence" longer than `MAX_SENTENCE_CHARS` (a table, a code block, a list without
    full stops) is split into its lines. Headings (Markdown `#`, reStructuredText underlines),
    lead-ins ending with a colon and fragments of fewer than four words are left out: they
    never answer anything.
    """
    picked: list[str] = []
    for context in contexts:
        for sentence in sentences(context):
            lines = sentence.splitlines()
            split = len(sentence) > MAX_SENTENCE_CHARS or any(_HEADING.match(x) for x in lines)
            parts = lines if split else [sentence]
            for part in parts:
                if _HEADING.match(part) or part.rstrip().endswith(":"):
                    # "## How much deposit do you need?" answers nothing, nor does
                    # "The pattern for our shipment references is::" without what follows.
                    continue
                part = " ".join(part.split())
                if (
                    MIN_SENTENCE_CHARS <= len(part) <= MAX_SENTENCE_CHARS
                    and len(part.split()) >= MIN_SENTENCE_WORDS
                    and part not in picked
                ):
                    picked.append(part)
    return picked


def extractive_answer_schema(
    contexts: list[str] | None = None, *, options: list[str] | None = None
) -> type[AnswerOut]:
    """An `AnswerOut` whose quotes must be sentences of the contexts (or `options`), verbatim.

    Used with small local models: JSON-schema grammars turn the `enum` into a constraint, so
    the model can only pick real sentences (measured: all picks verbatim, where free-text
    quotes were verbatim a quarter of the time). Pass the few sentences that best match the
    question (`evaluators.relevance.rank_candidates`): a tiny model picks well among a few.
    """
    if options is None:
        options = candidate_sentences(contexts or [])
    picked = list(dict.fromkeys(options))[:MAX_EXTRACTIVE_SENTENCES] or ["(no sentence)"]
    quote_type = Literal[tuple(picked)]  # type: ignore[valid-type]
    model = create_model(
        "AnswerOut",
        __base__=AnswerOut,
        # The free-text answer is replaced by the picked sentences: keep it short (fast).
        answer=(
            str,
            Field(description="A short answer; empty when not answerable.", max_length=200),
        ),
        quotes=(
            list[quote_type],  # type: ignore[valid-type]
            Field(description="Sentences from the context that answer the question.", max_length=3),
        ),
    )
    return model
