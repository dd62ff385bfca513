from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import EXAMPLE_SPEC


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "personagen.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("personagen ")


def test_validate_example() -> None:
    result = cli("validate", str(EXAMPLE_SPEC))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "deposits-and-mortgages.md" in result.stdout


def test_goals_lists_the_library() -> None:
    result = cli("goals")
    assert result.returncode == 0 and "qa" in result.stdout


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"persona": "A nurse", "data": [{"path": "nope/*.md"}]}, "nope/*.md"),
        (
            {"persona": "A nurse", "data": [{"text": "x"}], "goal": "summarize-everything"},
            "unknown goal",
        ),
        (
            {"persona": "A nurse", "data": [{"text": "x"}], "goal": {"params": {"bogus": 1}}},
            "goal.params",
        ),
        ({"persona": "A nurse", "data": [{"text": "x"}], "llm": {"api_key": "sk-x"}}, "api_key"),
        ({"persona": {"name": "x"}, "data": [{"text": "x"}]}, "persona.description"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, spec: dict[str, object], message: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = cli("validate", str(path))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_spec_file(tmp_path: Path) -> None:
    result = cli("run", str(tmp_path / "none.yaml"), "--provider", "fake")
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_run_with_fake_provider_writes_bundle(tmp_path: Path) -> None:
    result = cli(
        "run",
        str(EXAMPLE_SPEC),
        "--provider",
        "fake",
        "--out",
        str(tmp_path / "out"),
        "--state-dir",
        str(tmp_path / "state"),
        "-q",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    bundles = list((tmp_path / "out").iterdir())
    assert len(bundles) == 1
    metadata = json.loads((bundles[0] / "metadata.json").read_text())
    assert metadata["status"] == "done" and metadata["usage"]["totals"]["llm_calls"] > 0


def test_review_with_a_decisions_file(tmp_path: Path) -> None:
    spec = json.loads(
        json.dumps(
            {
                "persona": {
                    "name": "Maya",
                    "description": "A nurse buying a first home",
                    "expertise": "novice",
                },
                "goal": {"name": "qa", "params": {"num_questions": 2}},
                "data": [{"path": str(EXAMPLE_SPEC.parent / "docs")}],
                "run": {"review": ["questions"], "max_iterations": 1},
                "llm": {"provider": "fake"},
            }
        )
    )
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    common = ["--out", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"), "-q"]
    started = cli("run", str(path), "--run-id", "rv", *common, cwd=tmp_path)
    assert started.returncode == 5 and "personagen review rv" in started.stderr
    decisions = tmp_path / "decisions.yaml"
    decisions.write_text("approve_all: true\n")
    resumed = cli("review", "rv", "--decisions", str(decisions), *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "out" / "rv" / "qa.jsonl").is_file()
    again = cli("review", "rv", "--approve-all", *common, cwd=tmp_path)
    assert again.returncode == 2 and "not waiting for review" in again.stderr


def test_review_finds_a_batch_runs_own_checkpoint_file(tmp_path: Path) -> None:
    """A batch on SQLite checkpoints each run in STATE_DIR/checkpoints/<run>.sqlite."""
    import asyncio

    from personagen.api import arun

    spec = {
        "persona": {"name": "Maya", "description": "A nurse buying a first home"},
        "goal": {"name": "qa", "params": {"num_questions": 2}},
        "data": [{"path": str(EXAMPLE_SPEC.parent / "docs")}],
        "run": {"review": ["questions"], "max_iterations": 1},
        "llm": {"provider": "fake"},
    }
    state, out = tmp_path / "state", tmp_path / "out"
    own = state / "checkpoints" / "batch-run-1.sqlite"
    paused = asyncio.run(
        arun(spec, run_id="batch-run-1", checkpoint=str(own), out_dir=out, state_dir=state)
    )
    assert paused.status == "waiting_for_review" and own.is_file()
    assert not (state / "checkpoints.sqlite").exists()
    common = ["--out", str(out), "--state-dir", str(state), "-q"]
    done = cli("review", "batch-run-1", "--approve-all", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (out / "batch-run-1" / "qa.jsonl").is_file()
    assert not (state / "checkpoints.sqlite").exists()  # finished in its own file
    # And an explicit --checkpoint wins (here: a file that does not hold the run).
    other = cli("resume", "batch-run-1", "--checkpoint", str(tmp_path / "x.sqlite"), *common)
    assert other.returncode == 2 and "no checkpoint for run 'batch-run-1'" in other.stderr


@pytest.mark.parametrize(
    ("goal", "shown"),
    [
        ({"name": "summary"}, "summary"),
        ({"name": "rewrite", "params": {"instruction": "Rewrite it as a checklist."}}, "rewrites"),
    ],
)
def test_run_other_goals_from_the_cli(tmp_path: Path, goal: dict[str, object], shown: str) -> None:
    spec = {
        "persona": {"name": "Maya", "description": "A nurse buying a first home"},
        "goal": goal,
        "data": [{"path": str(EXAMPLE_SPEC.parent / "docs")}],
        "llm": {"provider": "fake"},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    common = ["--out", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state"), "-q"]
    result = cli("run", str(path), "--run-id", "g1", *common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout and "accepted" in result.stdout
    assert (tmp_path / "out" / "g1" / "metadata.json").is_file()
