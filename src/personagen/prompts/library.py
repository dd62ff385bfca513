"""The goal library: goal files (YAML) loaded by name or path, and prompt rendering.

A goal file names its tuning loop, metrics, default baseline, parameters and prompt
templates. Templates are Jinja2 (sandboxed, strict: an unknown variable is an error). A
template may carry an `embedded` variant used with the small bundled model.

A goal file may `extends: <library goal>`: it then starts from that goal's loop, metrics,
baseline, params and prompts, and sets only what it changes (a user's checklist goal is an
instruction and its criteria on top of `rewrite`). Every error names the file and the key.
"""

from __future__ import annotations

from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import ValidationError

from personagen.errors import SpecError
from personagen.state.goal import GoalDefinition, PromptTemplate, ResolvedGoal
from personagen.state.spec import Goal

KNOWN_METRICS = (
    "grounding",
    "relevance",
    "faithfulness",
    "answer_relevancy",
    "context_precision",
    "persona_fit",
)

LOOP_METRICS: dict[str, tuple[str, ...]] = {
    "qa": KNOWN_METRICS,
    # faithfulness: share of the summary's claims found in the data; coverage: how well the
    # persona's needs that the data addresses are covered; persona_fit: level, concerns,
    # language, length.
    "summary": ("faithfulness", "coverage", "persona_fit"),
    # criteria: the lowest of the user's criteria (each judged 1-5), so every one must pass.
    "rewrite": ("faithfulness", "criteria", "persona_fit"),
}
"""The metrics each loop can measure (a goal measures some or all of them)."""


_REQUIRED_PROMPTS: dict[str, tuple[str, ...]] = {
    "qa": ("generate_questions", "answer", "replace_question", "persona_fit"),
    "summary": ("map", "combine", "reduce", "claims", "coverage", "persona_fit"),
    "rewrite": ("rewrite", "claims", "judge"),
}

_REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {
    "qa": (),
    "summary": (
        "map_chars",
        "max_notes",
        "reduce_max_notes",
        "target_words",
        "max_sections",
        "evidence_notes",
        "claims_chars",
        "check_language",
        "chunk_size",
        "chunk_overlap",
    ),
    "rewrite": (
        "instruction",
        "criteria",
        "unit",
        "unit_chars",
        "max_units",
        "claims_chars",
        "check_language",
        "chunk_size",
        "chunk_overlap",
    ),
}

_COMMON_VARIABLES = frozenset({"persona", "persona_short", "language", "user_prompts", "params"})
# The variables each prompt of the summary and rewrite loops is rendered with; a goal file
# using another one fails when it is loaded, not halfway through a run.
_PROMPT_VARIABLES: dict[str, dict[str, frozenset[str]]] = {
    "summary": {
        "map": frozenset({"excerpt", "source", "max_notes"}),
        "combine": frozenset({"notes", "max_notes"}),
        "reduce": frozenset({"notes", "target_words", "max_sections", "previous", "feedback"}),
        "claims": frozenset({"sources", "output"}),
        "coverage": frozenset({"need", "notes", "summary"}),
        "persona_fit": frozenset({"summary", "target_words"}),
    },
    "rewrite": {
        "rewrite": frozenset({"instruction", "criteria", "text", "source", "previous", "feedback"}),
        "claims": frozenset({"sources", "output"}),
        "judge": frozenset({"instruction", "criteria", "text", "source", "output"}),
    },
}
MAX_CRITERIA = 8
UNITS = ("section", "chunk", "document")


def _library_dir() -> Any:
    return resources.files("personagen.prompts").joinpath("goals")


def list_goals() -> list[GoalDefinition]:
    """Every goal shipped in the library, sorted by name."""
    goals = []
    for entry in _library_dir().iterdir():
        if entry.name.endswith((".yaml", ".yml")):
            goals.append(_parse_goal(entry.read_text(encoding="utf-8"), f"library:{entry.name}"))
    return sorted(goals, key=lambda g: g.name)


# libyaml's loader when PyYAML was built with it: ~10x faster on the library's prompt files.
_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        raw = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise SpecError(f"goal file {origin}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"goal file {origin}: expected a mapping at the top level")
    return raw


def _library_raw() -> dict[str, tuple[dict[str, Any], str]]:
    """Every library goal file as loaded YAML, by goal name, with its origin."""
    found: dict[str, tuple[dict[str, Any], str]] = {}
    for entry in _library_dir().iterdir():
        if entry.name.endswith((".yaml", ".yml")):
            origin = f"library:{entry.name}"
            raw = _load_yaml(entry.read_text(encoding="utf-8"), origin)
            found[str(raw.get("name", entry.name))] = (raw, origin)
    return found


def _extend(raw: dict[str, Any], origin: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """Merge a goal file over the library goal it extends (params, baseline, prompts by key)."""
    base_name = raw.get("extends")
    if base_name is None:
        return raw
    library = _library_raw()
    if not isinstance(base_name, str) or base_name not in library:
        raise SpecError(
            f"goal file {origin}: extends: unknown library goal {base_name!r} "
            f"(library goals: {', '.join(sorted(library))})"
        )
    if base_name in chain:
        raise SpecError(
            f"goal file {origin}: extends: goals extend each other in a cycle "
            f"({' -> '.join([*chain, base_name])})"
        )
    base_raw, base_origin = library[base_name]
    base = _extend(base_raw, base_origin, (*chain, base_name))
    if "loop" in raw and raw["loop"] != base.get("loop"):
        raise SpecError(
            f"goal file {origin}: loop: {raw['loop']!r} differs from the loop of "
            f"{base_name!r} ({base.get('loop')!r}); drop 'loop' or extend another goal"
        )
    merged = {**{k: v for k, v in base.items() if k != "name"}, **raw}
    for key in ("params", "baseline", "prompts"):
        child = raw.get(key)
        if child is not None and not isinstance(child, dict):
            raise SpecError(f"goal file {origin}: {key}: expected a mapping")
        merged[key] = {**(base.get(key) or {}), **(child or {})}
    for key, value in (raw.get("params") or {}).items():
        default = (base.get("params") or {}).get(key)
        if default is not None and value is not None and not _same_type(default, value):
            raise SpecError(
                f"goal file {origin}: params.{key}: expected {type(default).__name__} "
                f"(as in {base_name!r}), got {value!r}"
            )
    merged["extends"] = base_name
    return merged


def _same_type(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float) and isinstance(value, int):
        return True
    return isinstance(value, type(default))


def _parse_goal(text: str, origin: str) -> GoalDefinition:
    # Parsing and checking a goal file (YAML, extends, every prompt's Jinja) costs tens of
    # milliseconds; a run resolves its goal more than once and a batch runs many runs.
    return _parse_goal_cached(text, origin).model_copy(deep=True)


@lru_cache(maxsize=64)
def _parse_goal_cached(text: str, origin: str) -> GoalDefinition:
    raw = _extend(_load_yaml(text, origin), origin)
    try:
        goal = GoalDefinition.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise SpecError(f"goal file {origin}: {where}: {first['msg']}") from exc
    missing = [p for p in _REQUIRED_PROMPTS[goal.loop] if p not in goal.prompts]
    if missing:
        raise SpecError(
            f"goal file {origin}: prompts: loop {goal.loop!r} needs prompts {', '.join(missing)}"
        )
    known_metrics = LOOP_METRICS[goal.loop]
    for metric in goal.metrics:
        if metric not in known_metrics:
            raise SpecError(
                f"goal file {origin}: metrics: unknown metric {metric!r} for loop "
                f"{goal.loop!r} (known: {', '.join(known_metrics)})"
            )
    for metric, minimum in goal.baseline.items():
        if metric not in goal.metrics:
            raise SpecError(
                f"goal file {origin}: baseline.{metric}: not a metric of this goal "
                f"(metrics: {', '.join(goal.metrics)})"
            )
        if not 0.0 <= minimum <= 1.0:
            raise SpecError(
                f"goal file {origin}: baseline.{metric}: must be between 0 and 1, got {minimum}"
            )
    missing_params = [p for p in _REQUIRED_PARAMS[goal.loop] if p not in goal.params]
    if missing_params:
        raise SpecError(
            f"goal file {origin}: params: loop {goal.loop!r} needs parameter(s) "
            f"{', '.join(missing_params)} (or 'extends: {goal.loop}' to inherit them)"
        )
    _check_loop_params(goal.loop, goal.params, f"goal file {origin}: params", final=False)
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
    _check_prompt_variables(goal, origin)
    return goal


def _check_prompt_variables(goal: GoalDefinition, origin: str) -> None:
    known_by_prompt = _PROMPT_VARIABLES.get(goal.loop, {})
    for key, template in goal.prompts.items():
        if key not in known_by_prompt:
            continue
        known = known_by_prompt[key] | _COMMON_VARIABLES
        for variant, part in (("", template), (".embedded", template.embedded)):
            if part is None:
                continue
            for field in ("system", "user"):
                used = meta.find_undeclared_variables(_env().parse(getattr(part, field)))
                unknown = sorted(used - known)
                if unknown:
                    raise SpecError(
                        f"goal file {origin}: prompts.{key}{variant}.{field}: unknown "
                        f"variable(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
                    )


def normalize_criteria(value: Any, where: str) -> list[dict[str, str]]:
    """Criteria as `[{name, description}]`, from mappings or plain strings; errors name `where`.

    A plain string is the description; its name is made from its first words.
    """
    if not isinstance(value, list) or not value:
        raise SpecError(
            f"{where}: give a list of criteria (each a description, or a mapping "
            "with 'name' and 'description')"
        )
    if len(value) > MAX_CRITERIA:
        raise SpecError(f"{where}: at most {MAX_CRITERIA} criteria, got {len(value)}")
    criteria: list[dict[str, str]] = []
    for index, item in enumerate(value):
        if isinstance(item, str) and item.strip():
            words = [w for w in "".join(c if c.isalnum() else " " for c in item).split()][:3]
            name = "_".join(words).lower() or f"criterion_{index + 1}"
            criteria.append({"name": name, "description": item.strip()})
        elif isinstance(item, dict):
            extra = sorted(set(item) - {"name", "description"})
            given, description = item.get("name"), item.get("description")
            if extra:
                raise SpecError(f"{where}.{index}: unknown key(s) {', '.join(extra)}")
            if not isinstance(given, str) or not given.strip():
                raise SpecError(f"{where}.{index}.name: give the criterion a short name")
            if not isinstance(description, str) or not description.strip():
                raise SpecError(f"{where}.{index}.description: say what the judge checks")
            criteria.append({"name": given.strip(), "description": description.strip()})
        else:
            raise SpecError(
                f"{where}.{index}: expected a description or a mapping with 'name' and "
                f"'description', got {item!r}"
            )
    names = [c["name"] for c in criteria]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"{where}: criterion name(s) used twice: {', '.join(duplicates)}")
    return criteria


PARAM_RANGES: dict[str, tuple[type, float, float | None]] = {
    # name: (type, lowest allowed, highest allowed or None). Shared by every goal that has
    # the parameter; a goal file's own parameters are checked by type only.
    "num_questions": (int, 1, 10_000),
    "questions_per_excerpt": (int, 1, 50),
    "excerpt_chars": (int, 200, None),
    "chunk_size": (int, 50, None),
    "chunk_overlap": (int, 0, None),
    "top_k": (int, 1, 100),
    "answer_options": (int, 1, 50),
    "dedup_threshold": (int, 0, 100),
    "min_accepted": (int, 1, None),
    "answer_relevancy_strictness": (int, 1, 10),
    "target_words": (int, 10, 10_000),
    "max_sections": (int, 1, 8),
    "map_chars": (int, 100, None),
    "max_notes": (int, 1, 8),
    "reduce_max_notes": (int, 2, None),
    "evidence_notes": (int, 1, None),
    "claims_chars": (int, 100, None),
    "max_units": (int, 1, None),
    "selftest_probes": (int, 1, 100),
    "selftest_min_auc": (float, 0, 1),
    "rag_sweep_budget_s": (float, 0.001, None),
}
"""Declared types and ranges of goal parameters (`validate` and `run` reject the rest)."""


def _check_param_ranges(params: dict[str, Any], where: str) -> None:
    """Reject parameters outside their declared type or range, naming key and value."""
    for key, (kind, low, high) in PARAM_RANGES.items():
        value = params.get(key)
        if value is None:
            continue
        whole = kind is int
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            expected = "a whole number" if whole else "a number"
            raise SpecError(f"{where}.{key}: expected {expected}, got {value!r}")
        if value < low or (high is not None and value > high):
            span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise SpecError(f"{where}.{key}: {value!r} is out of range (must be {span})")
    size, overlap = params.get("chunk_size"), params.get("chunk_overlap")
    if isinstance(size, int) and isinstance(overlap, int) and overlap >= size:
        raise SpecError(
            f"{where}.chunk_overlap: {overlap!r} must be smaller than chunk_size ({size})"
        )


def _check_loop_params(loop: str, params: dict[str, Any], where: str, *, final: bool) -> None:
    """Check the params a loop reads; `final` once the user's overrides are merged in.

    Normalizes `criteria` in place.
    """
    _check_param_ranges(params, where)
    budget = params.get("rag_sweep_budget_s")
    if budget is not None and (isinstance(budget, bool) or not budget > 0):
        raise SpecError(
            f"{where}.rag_sweep_budget_s: expected a positive number of seconds, got {budget!r}"
        )
    if loop != "rewrite":
        return
    instruction = params.get("instruction")
    if instruction is not None and (not isinstance(instruction, str) or not instruction.strip()):
        raise SpecError(f"{where}.instruction: expected a non-empty text, got {instruction!r}")
    if final and instruction is None:
        raise SpecError(
            f"{where}.instruction: this goal needs an instruction: what to do with each "
            "section, e.g. 'rewrite each section as a checklist for this persona'"
        )
    params["criteria"] = normalize_criteria(params.get("criteria"), f"{where}.criteria")
    if params.get("unit") not in UNITS:
        raise SpecError(
            f"{where}.unit: expected one of {', '.join(UNITS)}, got {params.get('unit')!r}"
        )
    unit_chars = params.get("unit_chars")
    if isinstance(unit_chars, bool) or not isinstance(unit_chars, int) or unit_chars < 200:
        raise SpecError(
            f"{where}.unit_chars: expected a whole number of at least 200, got {unit_chars!r}"
        )


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


def resolve_goal(
    goal: Goal, *, base_dir: str | None = None, small_judge: bool = False
) -> ResolvedGoal:
    """Merge the user's goal settings (prompts, params, baseline) into the goal definition.

    With `small_judge` (the judge is the embedded model), a goal's `small_judge` metrics and
    baseline replace its own, plus any metric the user's baseline names.
    """
    definition, source = load_goal_definition(goal.name, base_dir=base_dir)
    small = definition.small_judge if small_judge else None
    wanted = [m for m in definition.metrics if small and (m in small.metrics or m in goal.baseline)]
    if small is not None and wanted:
        definition = definition.model_copy(
            update={
                "metrics": wanted,
                "baseline": {
                    m: v
                    for m, v in {**definition.baseline, **small.baseline}.items()
                    if m in wanted
                },
            }
        )
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
    for index, name in enumerate(goal.metrics):
        if name in extra and name not in KNOWN_METRICS:
            try:
                load_callable(name, METRIC_GROUP)  # fail now, naming the plugin
            except SpecError as exc:
                raise SpecError(f"goal.metrics.{index}: {exc}") from exc
    metrics = [*definition.metrics, *extra]
    bad_metrics = sorted(set(goal.baseline) - set(metrics))
    if bad_metrics:
        raise SpecError(
            f"goal.baseline: metric(s) {', '.join(bad_metrics)} not measured by goal "
            f"{definition.name!r} (measured: {', '.join(metrics)}; add plugin metrics "
            "with goal.metrics)"
        )
    _check_loop_params(definition.loop, params, "goal.params", final=True)
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
        extends=definition.extends,
    )


@cache
def _env() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


@cache
def _shared() -> dict[str, PromptTemplate]:
    text = resources.files("personagen.prompts").joinpath("shared.yaml").read_text("utf-8")
    loaded = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a safe loader
    return {k: PromptTemplate.model_validate(v) for k, v in loaded.items()}


def shared_prompt(name: str) -> PromptTemplate:
    """A prompt shared by all goals (persona composition, topic rules)."""
    return _shared()[name]


def shared_prompts() -> dict[str, PromptTemplate]:
    """Every prompt shared by all goals, by name."""
    return dict(_shared())


@lru_cache(maxsize=256)
def _compiled(source: str) -> Any:
    # Compiling a Jinja template costs ~0.2 ms; prompts are rendered thousands of times.
    return _env().from_string(source)


def render(
    template: PromptTemplate, *, embedded: bool = False, **variables: Any
) -> list[BaseMessage]:
    """Render a prompt to chat messages; the embedded variant is used when asked and present."""
    chosen = template.embedded if embedded and template.embedded is not None else template
    try:
        system = _compiled(chosen.system).render(**variables)
        user = _compiled(chosen.user).render(**variables)
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
