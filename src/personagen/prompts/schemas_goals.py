"""Typed outputs of the LLM calls made by the `summary` and `rewrite` loops.

Every string has a `max_length` (at most 600) and every list at most 8 items: the embedded
model compiles these schemas into JSON grammars, and an unbounded field lets a small model
ramble until its output is cut in half. Longer texts are asked for as lists of parts.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

Part = Annotated[str, Field(max_length=600)]


class NoteOut(BaseModel):
    """One point of the data that matters to the persona, with its verbatim support.

    The quote comes first: a small model copies a sentence more reliably than it finds the
    sentence behind a point it already wrote.
    """

    quote: str = Field(
        description="A sentence of the excerpt that matters to this person, copied word for word.",
        max_length=400,
    )
    point: str = Field(
        description="What that sentence means for this person, briefly, in plain words.",
        max_length=300,
    )


class SummaryNotesOut(BaseModel):
    """Notes taken on one excerpt (map) or merged from other notes (combine)."""

    notes: list[NoteOut] = Field(
        description="The points that matter to this person, most important first.", max_length=8
    )


class SectionOut(BaseModel):
    """One section of a summary."""

    heading: str = Field(description="A short heading in the person's words.", max_length=120)
    text: str = Field(
        description="The section's text, using only facts from the notes.", max_length=600
    )


class SummaryDraftOut(BaseModel):
    """A summary written for the persona from the notes."""

    title: str = Field(description="A short title for the summary.", max_length=120)
    sections: list[SectionOut] = Field(
        description="The summary's sections, what matters most to the person first.", max_length=8
    )


class ClaimOut(BaseModel):
    """One factual claim of a text and the source sentence supporting it."""

    claim: str = Field(description="One factual claim the text makes.", max_length=300)
    quote: str = Field(
        description="The source sentence that supports the claim, copied word for word; "
        "empty if no source sentence supports it.",
        max_length=400,
    )


class ClaimsOut(BaseModel):
    """The claims of a text, each with its supporting quote (or none)."""

    claims: list[ClaimOut] = Field(
        description="Every factual claim the text makes, in order.", max_length=8
    )


class NeedCoverageOut(BaseModel):
    """Whether a summary covers one of the persona's needs."""

    reason: str = Field(description="One or two sentences explaining the verdict.", max_length=300)
    in_data: bool = Field(description="True if the notes from the documents address the need.")
    covered: int = Field(
        description="1-5: how well the summary covers the need (1 = not at all, 5 = fully).",
        ge=1,
        le=5,
    )


class SummaryFitOut(BaseModel):
    """The persona-fit judgement of a summary."""

    reason: str = Field(description="One or two sentences explaining the score.", max_length=400)
    score: int = Field(
        description="1-5: how well the summary suits the person's level, concerns, language "
        "and the length they would read.",
        ge=1,
        le=5,
    )


class RewriteOut(BaseModel):
    """One unit of the data rewritten for the persona, following the user's instruction."""

    applicable: bool = Field(
        description="False if the instruction does not apply to this text (nothing to do)."
    )
    parts: list[Part] = Field(
        description="The output in parts (paragraphs, list items or entries), in order; "
        "empty when not applicable.",
        max_length=8,
    )


class CriterionScoreOut(BaseModel):
    """The judgement of one criterion."""

    criterion: str = Field(description="The criterion's name, as given.", max_length=80)
    reason: str = Field(description="One sentence explaining the score.", max_length=300)
    score: int = Field(description="1-5: how well the output meets it.", ge=1, le=5)


class CriteriaJudgeOut(BaseModel):
    """The judgement of one rewritten unit against the user's criteria and the persona."""

    criteria: list[CriterionScoreOut] = Field(
        description="One judgement per criterion, in the order given.", max_length=8
    )
    persona_reason: str = Field(
        description="One sentence on how well the output suits the person.", max_length=300
    )
    persona_fit: int = Field(
        description="1-5: how well the output suits the person's level, needs and language.",
        ge=1,
        le=5,
    )
