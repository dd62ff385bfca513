"""Nodes: the programmable hook points.

The points are `after_persona`, `after_questions`, `after_answers`, `after_evaluation` and
`before_output`. Each is its own node, before the human review at the same point, so a hook
runs exactly once (a node that pauses for review re-runs from its start on resume) and the
reviewer sees what the hooks left. A hook receives `HookItem`s and a `HookContext` and returns
the items to keep (edited, filtered, or with new ones added), or None for no change; raising
`StopRun` stops the run on purpose, any other error stops it naming the hook. Both leave the
run resumable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from personagen.errors import PluginError
from personagen.evaluators.plugins import call
from personagen.evaluators.scoring import iteration_report
from personagen.graph.context import RunContext
from personagen.nodes._common import new_questions, regrounded
from personagen.nodes._hooks import apply_item_hooks
from personagen.nodes._instrument import instrumented
from personagen.nodes._judge import rejudged
from personagen.state.graph import State
from personagen.state.hooks import HookContext
from personagen.state.items import PairStatus, PersonaProfile, QAPair

Select = Callable[[State], list[QAPair]]


@instrumented("hooks_after_persona")
async def hooks_after_persona(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Let `after_persona` hooks replace the composed persona."""
    persona = state["persona"]
    for name, fn in runtime.context.hooks.get("after_persona", []):
        context = HookContext(
            hook="after_persona",
            run_id=state["run_id"],
            iteration=0,
            goal=state["spec"].goal.name,
            persona_name=persona.name,
        )
        result = await call(fn, persona.model_copy(), context, what=f"hook after_persona ({name})")
        if result is None:
            continue
        try:
            persona = PersonaProfile.model_validate(result)
        except Exception as exc:  # noqa: BLE001 - user returned something unusable
            raise PluginError(
                f"hook after_persona ({name}) returned an invalid persona: {exc}"
            ) from exc
    return {"persona": persona} if persona is not state["persona"] else {}


_AFTER_JUDGING = frozenset({"after_evaluation", "before_output"})


def _item_hook_node(
    point: str, select: Select, added_status: PairStatus, *, rescore: bool = False
) -> Callable[[State, Runtime[RunContext]], Awaitable[dict[str, Any]]]:
    async def node(state: State, runtime: Runtime[RunContext]) -> dict[str, Any]:
        if not runtime.context.hooks.get(point):
            return {}
        updated, changes = await apply_item_hooks(
            runtime.context.hooks, point, state, select(state), added_status=added_status
        )
        before = state.get("pairs", {})
        for pid, pair in updated.items():
            old = before.get(pid)
            if pair.answer and (old is None or pair.answer != old.answer):
                updated[pid] = regrounded(  # edited or added
                    pair, runtime.context.store, [d.id for d in state.get("documents", [])]
                )
                if point in _AFTER_JUDGING:
                    # Past the judging step: the new answer is judged and gated here.
                    updated[pid] = await rejudged(updated[pid], state, runtime.context)
        update: dict[str, Any] = {"pairs": updated, "hook_log": changes}
        if rescore and updated:
            merged = {**state.get("pairs", {}), **updated}
            minimum = state["goal"].param("min_accepted")
            update["reports"] = [
                iteration_report(
                    merged,
                    state["goal"].baseline,
                    state["iteration"],
                    int(minimum) if minimum is not None else None,
                )
            ]
        return update

    node.__name__ = f"hooks_{point}"
    node.__doc__ = f"Run the `{point}` hooks."
    return instrumented(f"hooks_{point}")(node)


def _this_pass(*statuses: str) -> Select:
    def select(state: State) -> list[QAPair]:
        iteration = state.get("iteration", 0)
        return [
            p
            for p in state.get("pairs", {}).values()
            if p.status in statuses and p.iteration == iteration
        ]

    return select


hooks_after_questions = _item_hook_node(
    "after_questions",
    lambda state: new_questions(state.get("pairs", {}).values(), state.get("iteration", 0)),
    "pending",
)
hooks_after_answers = _item_hook_node("after_answers", _this_pass("answered"), "answered")
hooks_after_evaluation = _item_hook_node(
    "after_evaluation", _this_pass("accepted", "unverified", "failing"), "accepted", rescore=True
)
hooks_before_output = _item_hook_node(
    "before_output",
    lambda state: [
        p
        for p in state.get("pairs", {}).values()
        if p.status in ("accepted", "unverified", "unanswerable")
    ],
    "accepted",
)
