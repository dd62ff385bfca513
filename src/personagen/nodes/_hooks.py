"""Running user hooks inside the nodes at the named hook points."""

from __future__ import annotations

from typing import Any

from personagen.errors import PluginError
from personagen.evaluators.plugins import call
from personagen.nodes._common import pair_id
from personagen.state.graph import State
from personagen.state.hooks import HookChange, HookContext, HookItem
from personagen.state.items import PairStatus, QAPair


def _view(pair: QAPair) -> HookItem:
    return HookItem(
        id=pair.id,
        question=pair.question,
        answer=pair.answer or None,
        status=pair.status,
        origin=pair.origin,
        scores=pair.scores,
        reasons=pair.feedback,
    )


async def apply_item_hooks(
    hooks: dict[str, list[tuple[str, Any]]],
    point: str,
    state: State,
    pairs: list[QAPair],
    *,
    added_status: PairStatus,
) -> tuple[dict[str, QAPair], list[HookChange]]:
    """Run the hooks at `point` over `pairs`; return changed pairs and the change log.

    Removed items become `rejected` with the hook named as the reason; edited items keep
    their id; added items get a new id and `added_status`.
    """
    updated: dict[str, QAPair] = {}
    changes: list[HookChange] = []
    current = {p.id: p for p in pairs}
    taken = set(state.get("pairs", {}))
    for name, fn in hooks.get(point, []):
        context = HookContext(
            hook=point,
            run_id=state["run_id"],
            iteration=state.get("iteration", 0),
            goal=state["goal"].name if "goal" in state else "",
            persona_name=state["persona"].name if "persona" in state else "",
        )
        views = [_view(p) for p in current.values()]
        result = await call(
            fn, [v.model_copy() for v in views], context, what=f"hook {point} ({name})"
        )
        if result is None:
            continue
        try:
            returned = [
                r if isinstance(r, HookItem) else HookItem.model_validate(r) for r in result
            ]
        except Exception as exc:  # noqa: BLE001 - a user returned something unusable
            raise PluginError(f"hook {point} ({name}) returned invalid items: {exc}") from exc
        change = HookChange(hook=point, name=name, iteration=context.iteration)
        kept_ids = {r.id for r in returned if r.id is not None}
        unknown = kept_ids - set(current)
        if unknown:
            raise PluginError(
                f"hook {point} ({name}) returned unknown item id(s): {sorted(unknown)}"
            )
        for pid in list(current):
            if pid not in kept_ids:
                pair = current.pop(pid)
                updated[pid] = pair.model_copy(
                    update={"status": "rejected", "feedback": [f"removed by hook {point} ({name})"]}
                )
                change.removed.append(pid)
        for item in returned:
            if item.id is None:
                pid = pair_id(item.question, taken | set(updated) | set(current))
                pair = QAPair(
                    id=pid,
                    question=item.question,
                    answer=item.answer or "",
                    origin="hook",
                    status=added_status,
                    answerable=True if item.answer else None,
                    iteration=max(1, context.iteration),
                )
                current[pid] = updated[pid] = pair
                change.added.append(pid)
                continue
            pair = current[item.id]
            edits: dict[str, Any] = {}
            if item.question != pair.question:
                edits["question"] = item.question
            if item.answer is not None and item.answer != (pair.answer or None):
                edits["answer"] = item.answer
            if edits:
                current[item.id] = updated[item.id] = pair.model_copy(update=edits)
                change.edited.append(item.id)
        if change.removed or change.edited or change.added:
            changes.append(change)
    return updated, changes
