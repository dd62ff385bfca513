"""Node: compose the persona profile from the spec (an LLM call only for a bare description)."""

from __future__ import annotations

import time
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import StructuredOutputError
from personagen.graph.context import RunContext
from personagen.nodes._instrument import instrumented
from personagen.prompts.library import render, shared_prompt
from personagen.prompts.schemas import PersonaProfileOut
from personagen.state.graph import State
from personagen.state.items import PersonaProfile
from personagen.state.metadata import Event


@instrumented("compose_persona")
async def compose_persona(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Merge the persona with its supplemental input; infer a profile from a bare description."""
    persona = state["spec"].persona
    profile = PersonaProfile.model_validate(persona.model_dump())
    events: list[Event] = []
    if persona.is_bare:
        llm = runtime.context.llm
        messages = render(
            shared_prompt("compose_persona"),
            embedded=llm.small_model,
            description=persona.description,
            supplemental=persona.supplemental or "",
        )
        try:
            inferred = await llm.structured(messages, PersonaProfileOut)
        except StructuredOutputError as exc:
            events.append(
                Event(
                    level="warning",
                    stage="compose_persona",
                    message="could not infer a profile from the description, using it as "
                    f"is: {exc}",
                )
            )
        else:
            profile = profile.model_copy(
                update={
                    "role": inferred.role.strip() or None,
                    "expertise": inferred.expertise,
                    "goals": [g.strip() for g in inferred.goals if g.strip()],
                    "pain_points": [p.strip() for p in inferred.pain_points if p.strip()],
                    "style": inferred.style.strip() or None,
                    "composed_by": "llm",
                }
            )
    return {
        "persona": profile,
        "started_at": state.get("started_at") or time.time(),
        "iteration": 1,
        "status": "running",
        "events": events,
    }
