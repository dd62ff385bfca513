"""The goal library: goal files (YAML) loaded by name or path, and prompt rendering.

A goal file names its tuning loop, metrics, default baseline, parameters and prompt
templates. Templates are Jinja2 (sandboxed, strict: an unknown variable is an error). A
template may carry an `embedded` variant used with the small bundled model.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from personagen.errors import SpecError
from personagen.state.goal import GoalDefinition, PromptTemplate, ResolvedGoal
from personagen.state.spec import Goal

KNOWN_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "persona_fit")


_REQUIRED_PROMPTS: dict[str, tuple[str, ...]] = {
    "qa": ("generate_questions", "answer", "replace_question", "persona_fit"),
}


def _library_dir() -> Any:
    return resources.files("personagen.prompts").joinpath("goals")


def list_goals() -> list[GoalDefinition]:
    """Every goal shipped in the library, sorted by name."""
    goals = []
    for entry in _library_dir().iterdir():
        if entry.name.endswith((".yaml", ".yml")):
            goals.append(_parse_goal(entry.read_text(encoding="utf-8"), f"library:{entry.name}"))
    return sorted(goals, key=lambda g: g.name)


def _parse_goal(text: str, origin: str) -> GoalDefinition:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"goal file {origin}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"goal file {origin}: expected a mapping at the top level")
    try:
        goal = GoalDefinition.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SpecError(f"goal file {origin}: {where}: {first['msg']}") from exc
    missing = [p for p in _REQUIRED_PROMPTS[goal.loop] if p not in goal.prompts]
    if missing:
        raise SpecError(
            f"goal file {origin}: loop {goal.loop!r} needs prompts {', '.join(missing)}"
        )
    for metric in goal.metrics:
        if metric not in KNOWN_METRICS:
            raise SpecError(
                f"goal file {origin}: unknown metric {metric!r} (known: {', '.join(KNOWN_METRICS)})"
            )
    for key, template in goal.prompts.items():
        for part in (template, template.embedded):
            if part is None:
                continue
            for field in ("system", "user"):
                try:
                    _env().parse(getattr(part, field))
                except TemplateError as exc:
                    raise SpecError(
                        f"goal file {origin}: prompts.{key}.{field}: bad template: {exc}"
                    ) from exc
    return goal


def load_goal_definition(
    name_or_path: str, *, base_dir: str | None = None
) -> tuple[GoalDefinition, str]:
    """Load a library goal by name, or a goal file by path; return it and where it came from."""
    looks_like_path = name_or_path.endswith((".yaml", ".yml")) or "/" in name_or_path
    if looks_like_path:
        path = Path(name_or_path)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise SpecError(f"goal file {str(path)!r} does not exist")
        return _parse_goal(path.read_text(encoding="utf-8"), str(path)), str(path)
    for goal in list_goals():
        if goal.name == name_or_path:
            return goal, f"library:{goal.name}"
    known = ", ".join(g.name for g in list_goals())
    raise SpecError(f"goal.name: unknown goal {name_or_path!r} (library goals: {known})")


def resolve_goal(goal: Goal, *, base_dir: str | None = None) -> ResolvedGoal:
    """Merge the user's goal settings (prompts, params, baseline) into the goal definition."""
    definition, source = load_goal_definition(goal.name, base_dir=base_dir)
    unknown = sorted(set(goal.params) - set(definition.params))
    if unknown:
        raise SpecError(
            f"goal.params: unknown parameter(s) {', '.join(unknown)} for goal "
            f"{definition.name!r} (known: {', '.join(sorted(definition.params))})"
        )
    params = {**definition.params, **goal.params}
    for key, default in definition.params.items():
        value = params[key]
        if default is not None and value is not None and not isinstance(value, type(default)):
            if not (isinstance(default, float) and isinstance(value, int)):
                raise SpecError(
                    f"goal.params.{key}: expected {type(default).__name__}, got {value!r}"
                )
    from personagen.evaluators.plugins import METRIC_GROUP, load_callable

    extra = [m for m in goal.metrics if m not in definition.metrics]
    for name in extra:
        if name not in KNOWN_METRICS:
            load_callable(name, METRIC_GROUP)  # fail now, naming the plugin
    metrics = [*definition.metrics, *extra]
    bad_metrics = sorted(set(goal.baseline) - set(metrics))
    if bad_metrics:
        raise SpecError(
            f"goal.baseline: metric(s) {', '.join(bad_metrics)} not measured by goal "
            f"{definition.name!r} (measured: {', '.join(metrics)}; add plugin metrics "
            "with goal.metrics)"
        )
    return ResolvedGoal(
        name=definition.name,
        description=definition.description,
        loop=definition.loop,
        source=source,
        metrics=metrics,
        baseline={**definition.baseline, **goal.baseline},
        params=params,
        user_prompts=list(goal.prompts),
        prompts=definition.prompts,
    )


@cache
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


@cache
def _shared() -> dict[str, PromptTemplate]:
    text = resources.files("personagen.prompts").joinpath("shared.yaml").read_text("utf-8")
    return {k: PromptTemplate.model_validate(v) for k, v in yaml.safe_load(text).items()}


def shared_prompt(name: str) -> PromptTemplate:
    """A prompt shared by all goals (persona composition, topic rules)."""
    return _shared()[name]


def render(
    template: PromptTemplate, *, embedded: bool = False, **variables: Any
) -> list[BaseMessage]:
    """Render a prompt to chat messages; the embedded variant is used when asked and present."""
    chosen = template.embedded if embedded and template.embedded is not None else template
    try:
        system = _env().from_string(chosen.system).render(**variables)
        user = _env().from_string(chosen.user).render(**variables)
    except TemplateError as exc:
        raise SpecError(f"prompt template error: {exc}") from exc
    return [SystemMessage(content=system.strip()), HumanMessage(content=_squeeze(user))]


def _squeeze(text: str) -> str:
    # Template conditionals leave runs of blank lines; collapse them to one.
    lines: list[str] = []
    for line in text.strip().splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip())
    return "\n".join(lines)
