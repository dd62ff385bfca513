"""The goal library: shipped goals, `extends`, user goal files, and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from personagen.cli import app
from personagen.errors import SpecError
from personagen.prompts.library import (
    LOOP_METRICS,
    list_goals,
    load_goal_definition,
    render,
    resolve_goal,
)
from personagen.state.spec import Goal

GOALS = Path(__file__).resolve().parents[1] / "data" / "goals"
GENERATION_PROMPTS = {"summary": ("map", "combine", "reduce"), "rewrite": ("rewrite",)}


def test_library_holds_the_goals_with_their_loops() -> None:
    goals = {g.name: g for g in list_goals()}
    assert {"qa", "summary", "rewrite", "checklist", "glossary"} <= set(goals)
    assert goals["summary"].loop == "summary"
    for name in ("rewrite", "checklist", "glossary"):
        assert goals[name].loop == "rewrite"
        assert set(goals[name].metrics) <= set(LOOP_METRICS["rewrite"])
    assert goals["checklist"].extends == goals["glossary"].extends == "rewrite"
    # Goals built on `rewrite` inherit its prompts and params, and set their own instruction.
    assert goals["checklist"].prompts == goals["rewrite"].prompts
    assert goals["rewrite"].params["instruction"] is None
    assert "checklist" in goals["checklist"].params["instruction"]
    assert [c["name"] for c in goals["glossary"].params["criteria"]] == [
        "right_terms",
        "plain_definitions",
    ]


def test_cli_lists_and_shows_goals() -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["goals"])
    assert listed.exit_code == 0, listed.output
    for name in ("summary", "rewrite", "checklist", "glossary"):
        assert name in listed.output
    shown = runner.invoke(app, ["goals", "show", "checklist"])
    assert shown.exit_code == 0, shown.output
    assert "extends: rewrite" in shown.output and "judge:" in shown.output
    assert "actionable" in shown.output
    user = runner.invoke(app, ["goals", "show", str(GOALS / "shift_checklist.yaml")])
    assert user.exit_code == 0, user.output
    assert "shift-checklist" in user.output


def test_user_goal_file_extending_a_library_goal() -> None:
    resolved = resolve_goal(Goal(name="goals/shift_checklist.yaml"), base_dir=str(GOALS.parent))
    assert resolved.name == "shift-checklist" and resolved.loop == "rewrite"
    assert resolved.source.endswith("shift_checklist.yaml") and resolved.extends == "rewrite"
    assert resolved.baseline == {"faithfulness": 0.8, "criteria": 0.7, "persona_fit": 0.6}
    criteria = resolved.param("criteria")
    assert criteria[1] == {"name": "grounded", "description": "Every step comes from the text."}
    assert criteria[0]["name"] == "every_step_is"  # a plain description gets a name
    assert resolved.param("unit_chars") == 2400  # inherited


def test_user_goal_file_written_from_scratch() -> None:
    definition, source = load_goal_definition(str(GOALS / "plain_rewrite.yaml"))
    assert definition.extends is None and source.endswith("plain_rewrite.yaml")
    assert definition.params["criteria"] == [
        {"name": "uses_no_jargon", "description": "Uses no jargon."}
    ]


def test_user_param_reaches_an_overridden_prompt() -> None:
    resolved = resolve_goal(
        Goal(name=str(GOALS / "brief_summary.yaml"), params={"tone": "brisk"}, prompts=["Be kind."])
    )
    messages = render(
        resolved.prompts["reduce"],
        persona="Maya",
        persona_short="Maya",
        language="en",
        user_prompts=resolved.user_prompts,
        params=resolved.params,
        notes=[],
        target_words=60,
        max_sections=1,
        previous="",
        feedback=[],
    )
    assert "brisk tone" in str(messages[0].content)
    assert "Be kind." in str(messages[1].content)
    assert resolved.prompts["map"] == load_goal_definition("summary")[0].prompts["map"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bad_yaml.yaml", "not valid YAML"),
        ("bad_not_mapping.yaml", "expected a mapping at the top level"),
        ("bad_loop.yaml", "loop: Input should be 'qa', 'summary' or 'rewrite'"),
        ("bad_missing_prompts.yaml", "prompts: loop 'rewrite' needs prompts judge"),
        ("bad_metric.yaml", "metrics: unknown metric 'answer_relevancy' for loop 'summary'"),
        ("bad_baseline.yaml", "baseline.coverage: must be between 0 and 1"),
        ("bad_variable.yaml", "prompts.rewrite.user: unknown variable(s) persona_name"),
        ("bad_template.yaml", "prompts.judge.system: bad template"),
        ("bad_criteria.yaml", "params.criteria.0.description"),
        ("bad_extends.yaml", "extends: unknown library goal 'summarise'"),
        ("bad_extends_loop.yaml", "loop: 'rewrite' differs from the loop of 'summary'"),
        ("bad_param_type.yaml", "params.target_words: expected int"),
        ("bad_missing_params.yaml", "params: loop 'summary' needs parameter(s) map_chars"),
    ],
)
def test_bad_goal_files_fail_naming_file_and_key(name: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_goal_definition(str(GOALS / name))
    message = str(caught.value)
    assert f"goal file {GOALS / name}" in message
    assert expected in message


def test_missing_goal_file_is_named() -> None:
    with pytest.raises(SpecError, match="nowhere.yaml' does not exist"):
        load_goal_definition("goals/nowhere.yaml", base_dir=str(GOALS.parent))


@pytest.mark.parametrize(
    ("goal", "expected"),
    [
        ({"name": "rewrite"}, "goal.params.instruction: this goal needs an instruction"),
        (
            {"name": "rewrite", "params": {"instruction": "  "}},
            "goal.params.instruction: expected a non-empty text",
        ),
        (
            {"name": "checklist", "params": {"criteria": []}},
            "goal.params.criteria: give a list of criteria",
        ),
        (
            {"name": "checklist", "params": {"criteria": [{"name": "x"}]}},
            "goal.params.criteria.0.description",
        ),
        (
            {"name": "checklist", "params": {"criteria": [f"criterion {i}" for i in range(9)]}},
            "goal.params.criteria: at most 8 criteria",
        ),
        (
            {"name": "checklist", "params": {"criteria": ["Short.", "Short."]}},
            "criterion name(s) used twice: short",
        ),
        ({"name": "glossary", "params": {"unit": "page"}}, "goal.params.unit: expected one of"),
        ({"name": "summary", "params": {"target_words": "many"}}, "goal.params.target_words"),
        ({"name": "summary", "params": {"instruction": "x"}}, "unknown parameter(s) instruction"),
        ({"name": "summary", "baseline": {"criteria": 0.5}}, "not measured by goal 'summary'"),
    ],
)
def test_bad_goal_settings_in_the_spec_are_named(goal: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        resolve_goal(Goal.model_validate(goal))
    assert expected in str(caught.value)


def test_generic_rewrite_takes_instruction_and_criteria_from_params() -> None:
    resolved = resolve_goal(
        Goal(
            name="rewrite",
            params={
                "instruction": "Rewrite each section as a checklist for this persona.",
                "criteria": [
                    "Every item is an action.",
                    {"name": "short", "description": "Brief."},
                ],
            },
        )
    )
    assert resolved.param("instruction").startswith("Rewrite each section")
    assert [c["name"] for c in resolved.param("criteria")] == ["every_item_is", "short"]


@pytest.mark.parametrize("goal_name", ["summary", "rewrite", "checklist", "glossary"])
@pytest.mark.parametrize("embedded", [False, True])
def test_user_prompts_reach_every_generation_prompt(goal_name: str, embedded: bool) -> None:
    resolved = resolve_goal(
        Goal(name=goal_name, prompts=["Mention the monthly cost first."], params=_needed(goal_name))
    )
    variables: dict[str, Any] = {
        "persona": "Maya, a nurse",
        "persona_short": "Maya, a nurse",
        "language": "en",
        "user_prompts": resolved.user_prompts,
        "params": resolved.params,
        "excerpt": "Text.",
        "source": "doc.md",
        "max_notes": 3,
        "notes": [{"point": "p", "quote": "q"}],
        "target_words": 100,
        "max_sections": 2,
        "previous": "",
        "feedback": [],
        "instruction": "Do it.",
        "criteria": [{"name": "c", "description": "d"}],
        "text": "Text.",
    }
    for key in GENERATION_PROMPTS[resolved.loop]:
        messages = render(resolved.prompts[key], embedded=embedded, **variables)
        assert "Mention the monthly cost first." in str(messages[-1].content), key


def _needed(goal_name: str) -> dict[str, Any]:
    return {"instruction": "Do it."} if goal_name == "rewrite" else {}
