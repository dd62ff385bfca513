"""Human review: what a review hook shows, and the decision a reviewer sends back.

A run configured with `run.review: [persona, questions, answers, output]` pauses at each of
those hooks (a LangGraph `interrupt`) with a `ReviewRequest`. It continues when resumed with a
`ReviewDecision` (from Python: `personagen.resume(run_id, decision=...)` or
`Command(resume=decision.model_dump())`; from the CLI: `personagen review RUN_ID`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ReviewHook = Literal["persona", "questions", "answers", "output"]


class ReviewItem(BaseModel):
    """One item shown to the reviewer."""

    id: str
    question: str
    answer: str | None = None
    status: str
    scores: dict[str, float] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)


class ReviewRequest(BaseModel):
    """What a paused run asks the reviewer to decide on."""

    hook: ReviewHook
    run_id: str
    iteration: int
    items: list[ReviewItem] = Field(default_factory=list)
    persona: dict[str, Any] | None = Field(None, description="The composed persona (persona hook).")
    help: str = Field(
        "Resume with a ReviewDecision: approve_all, or per item id "
        "{action: approve|edit|reject, text: new text (edit), note: why (reject)}."
    )


class ItemDecision(BaseModel):
    """The reviewer's decision on one item."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["approve", "edit", "reject"]
    text: str | None = Field(None, description="The edited question (questions hook) or answer.")
    note: str | None = Field(None, description="Why; fed into the item's regeneration.")


class ReviewDecision(BaseModel):
    """The reviewer's answer to a `ReviewRequest`. Items not mentioned are approved."""

    model_config = ConfigDict(extra="forbid")

    approve_all: bool = False
    items: dict[str, ItemDecision] = Field(default_factory=dict)
    persona: dict[str, Any] | None = Field(
        None, description="Persona fields to change (persona hook), e.g. {'expertise': 'expert'}."
    )
