"""What the terminal shows: goals show round-trips, runs show cuts no metric name, the
README's examples parse (issue 16, 6)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from personagen import cli
from personagen.prompts.library import list_goals, load_goal_definition

from .test_run_store import drive_fake_run

README = Path(__file__).resolve().parents[2] / "README.md"


def _main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["personagen", *argv])
    try:
        cli.main()
    except SystemExit as exc:
        assert not exc.code, exc.code


@pytest.mark.parametrize("name", [g.name for g in list_goals()])
def test_goals_show_prints_the_goal_as_yaml_that_round_trips(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _main(["goals", "show", name], monkeypatch)
    printed = capsys.readouterr().out
    definition, _ = load_goal_definition(name)
    assert yaml.safe_load(printed) == definition.model_dump(exclude_none=True)
    assert "\n\n\n" not in printed


def test_runs_show_names_every_metric_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = drive_fake_run(tmp_path)
    db = f"sqlite:///{tmp_path / 'state' / 'runs.sqlite'}"
    _main(["runs", "show", run.run_id, "--db", db], monkeypatch)
    printed = capsys.readouterr().out
    for metric in {m for r in run.metadata["scores_per_iteration"] for m in r["scores"]}:
        assert re.search(rf"│ {metric} +│", printed), (metric, printed)


def test_the_readme_batch_example_parses(tmp_path: Path) -> None:
    from personagen.batch.spec import load_batch

    block = README.read_text().split("batch_id: mortgage-faq", 1)[1].split("```", 1)[0]
    (tmp_path / "docs").mkdir()
    for name in ("deposits.md", "costs.md"):
        (tmp_path / "docs" / name).write_text("Some text about buying a home.\n")
    path = tmp_path / "batch.yaml"
    path.write_text("batch_id: mortgage-faq" + block)
    plan = load_batch(path)
    assert {item.spec.persona.description for item in plan.items} == {
        "First-time buyer, nurse",
        "Broker",
    }


def test_runs_list_keeps_ids_statuses_and_figures_whole_at_80_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = drive_fake_run(tmp_path, run_id="20261205-081019-8a320b")
    db = f"sqlite:///{tmp_path / 'state' / 'runs.sqlite'}"
    monkeypatch.setenv("COLUMNS", "80")
    _main(["runs", "list", "--db", db], monkeypatch)
    row = next(line for line in capsys.readouterr().out.splitlines() if run.run_id in line)
    tokens = f"{run.metadata['usage']['totals']['total_tokens']:,}"
    assert " done " in row and tokens in row and len(row) <= 80, row
