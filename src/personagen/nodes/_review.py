"""Shared mechanics of the review hooks: whether to pause, and reading the decision."""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt
from pydantic import ValidationError

from personagen.errors import SpecError
from personagen.state.graph import State
from personagen.state.items import QAPair
from personagen.state.review import ReviewDecision, ReviewHook, ReviewItem, ReviewRequest


def hook_enabled(state: State, hook: ReviewHook) -> bool:
    """Whether the run pauses at `hook`."""
    options = state["spec"].run
    return hook in options.review and not options.auto_approve


def as_item(pair: QAPair, *, with_answer: bool) -> ReviewItem:
    """The reviewer's view of a pair."""
    return ReviewItem(
        id=pair.id,
        question=pair.question,
        answer=pair.answer if with_answer else None,
        status=pair.status,
        scores=pair.scores,
        reasons=pair.feedback,
    )


def ask(
    state: State,
    hook: ReviewHook,
    *,
    items: list[ReviewItem],
    persona: dict[str, Any] | None = None,
) -> ReviewDecision:
    """Pause the run with a review request; return the validated decision.

    Runs again from the top on resume (LangGraph re-executes the node), so callers do no work
    with side effects before calling it.
    """
    request = ReviewRequest(
        hook=hook,
        run_id=state["run_id"],
        iteration=state.get("iteration", 0),
        items=items,
        persona=persona,
    )
    raw = interrupt(request.model_dump(mode="json"))
    if isinstance(raw, ReviewDecision):
        decision = raw
    else:
        try:
            decision = ReviewDecision.model_validate(raw or {})
        except ValidationError as exc:
            raise SpecError(f"review decision for hook {hook!r} is invalid: {exc}") from exc
    unknown = sorted(set(decision.items) - {item.id for item in items})
    if unknown:
        raise SpecError(
            f"review decision for hook {hook!r} names unknown item(s): {', '.join(unknown)}"
        )
    for item_id, item in decision.items.items():
        if item.action == "edit" and not (item.text and item.text.strip()):
            raise SpecError(f"review decision: item {item_id!r} is 'edit' but gives no text")
    return decision


def before_edit(pair: QAPair) -> dict[str, object]:
    """The pair as it was before a reviewer's edit, for its history."""
    return {"question": pair.question, "answer": pair.answer, "reasons": ["edited by the reviewer"]}
