"""Node: pause for the reviewer to approve or edit the composed persona (`persona` hook)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime
from pydantic import ValidationError

from personagen.errors import SpecError
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.nodes._review import ask, hook_enabled
from personagen.state.graph import State
from personagen.state.items import PersonaProfile


@instrumented("review_persona")
async def review_persona(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Apply the reviewer's persona edits (unknown or invalid fields are rejected)."""
    if not hook_enabled(state, "persona"):
        return {}
    persona = state["persona"]
    decision = ask(state, "persona", items=[], persona=persona.model_dump(mode="json"))
    if not decision.persona:
        return {}
    try:
        edited = PersonaProfile.model_validate({**persona.model_dump(), **decision.persona})
    except ValidationError as exc:
        raise SpecError(f"review decision: invalid persona edit: {exc}") from exc
    unknown = sorted(set(decision.persona) - set(PersonaProfile.model_fields))
    if unknown:
        raise SpecError(f"review decision: unknown persona field(s): {', '.join(unknown)}")
    return {"persona": edited}
