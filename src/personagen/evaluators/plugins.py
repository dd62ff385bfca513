"""Plugins: user metrics, constraint checkers and hooks, by dotted path or entry point.

A reference is either `package.module:function` (or `package.module.function`) or the name of
an entry point in the group `personagen.evaluators` (metrics) or `personagen.constraints`
(constraint checkers). Plugins return the same per-item shapes as the built-in evaluators.

Metric plugin:      fn(question, answer, contexts, persona) -> float | (float, reason)
Constraint plugin:  fn(text, field=..., options=...) -> bool | str | None
                    (truthy = the text matches the rule; a string is the reason)
Either may be async.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from personagen.errors import PluginError, SpecError, StopRun
from personagen.state.items import PersonaProfile
from personagen.state.results import FieldName, ListName, Violation
from personagen.state.spec import ConstraintRule

METRIC_GROUP = "personagen.evaluators"
CONSTRAINT_GROUP = "personagen.constraints"


def is_reference(name: str) -> bool:
    """Whether `name` looks like a dotted path rather than an entry-point name."""
    return ":" in name or "." in name


@cache
def load_callable(ref: str, group: str | None = None) -> Callable[..., Any]:
    """Import the callable `ref` names; SpecError names the reference when it cannot."""
    if is_reference(ref):
        module_name, _, attr = ref.partition(":") if ":" in ref else ref.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SpecError(f"plugin {ref!r}: cannot import module {module_name!r}: {exc}") from exc
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise SpecError(f"plugin {ref!r}: module {module_name!r} has no {attr!r}")
    else:
        if group is None:
            raise SpecError(f"plugin {ref!r}: give 'package.module:function'")
        found = [ep for ep in entry_points(group=group) if ep.name == ref]
        if not found:
            raise SpecError(f"plugin {ref!r}: no entry point of that name in group {group!r}")
        try:
            target = found[0].load()
        except Exception as exc:  # noqa: BLE001 - any import-time failure of user code
            raise SpecError(f"plugin {ref!r}: loading its entry point failed: {exc}") from exc
    if not callable(target):
        raise SpecError(f"plugin {ref!r} is not callable")
    return target


async def call(fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> Any:
    """Call a sync or async user function; its failure becomes a PluginError naming it."""
    try:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
    except (StopRun, PluginError, SpecError):
        raise
    except Exception as exc:  # noqa: BLE001 - user code: name it and stop the run
        raise PluginError(
            f"{what or getattr(fn, '__name__', fn)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return result


async def score_plugin_metric(
    name: str, *, question: str, answer: str, contexts: list[str], persona: PersonaProfile
) -> tuple[float, str]:
    """Run a metric plugin; the score must be within 0..1.

    Raises:
        SpecError: the plugin cannot be loaded or returns something that is not a score.
    """
    fn = load_callable(name, METRIC_GROUP)
    result = await call(fn, question, answer, contexts, persona, what=f"metric plugin {name!r}")
    reason = f"{name} (plugin)"
    if isinstance(result, tuple):
        result, reason = result[0], str(result[1])
    if isinstance(result, bool) or not isinstance(result, int | float):
        raise SpecError(f"metric plugin {name!r} returned {result!r}, not a number")
    if not 0.0 <= float(result) <= 1.0:
        raise SpecError(f"metric plugin {name!r} returned {result}, outside 0..1")
    return float(result), reason


async def check_plugin_rule(
    rule: ConstraintRule, list_name: ListName, field: FieldName, text: str
) -> Violation | None:
    """Run a constraint plugin with filter_out / check_for semantics."""
    assert rule.plugin is not None
    fn = load_callable(rule.plugin, CONSTRAINT_GROUP)
    result = await call(
        fn, text, field=field, options=dict(rule.options), what=f"constraint plugin {rule.plugin!r}"
    )
    matches = bool(result)
    violated = matches if list_name == "filter_out" else not matches
    if not violated:
        return None
    detail = result if isinstance(result, str) and result else None
    what = "matches" if list_name == "filter_out" else "does not satisfy"
    return Violation(
        rule=rule.label,
        kind="plugin",
        list=list_name,
        field=field,
        reason=f"{field} {what} {rule.plugin}" + (f": {detail}" if detail else ""),
    )
