"""Fail loudly (issue 15, 7): a run whose model output never parsed ends `failed`, exit 4,
with one line naming the model and the schema; every exit code means one documented thing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import personagen
from personagen import cli
from personagen.api import RunResult
from personagen.llm import factory
from personagen.llm.fake import FakeChatModel, FakeRequest
from personagen.state.items import QAPair


def _garbage(request: FakeRequest) -> str | None:
    # What a server that ignores the JSON instruction sends back, for every structured call.
    return None if request.schema_name == "text" else 'Sure! Here are some thoughts \\ "on it".'


def test_a_run_whose_output_never_parsed_fails_naming_model_and_schema(
    tmp_path: Path, make_spec: Any
) -> None:
    spec = make_spec(run={"max_iterations": 1})
    result = personagen.run(
        spec,
        chat_model=FakeChatModel(faults=_garbage, model_name="gpt-x"),
        state_dir=tmp_path / "state",
        out_dir=tmp_path / "out",
    )
    assert result.status == "failed"
    assert result.reason is not None and "\n" not in result.reason
    assert "gpt-x" in result.reason and "could not be parsed" in result.reason
    assert "Out" in result.reason  # the schema, e.g. QuestionsOut
    from personagen.store.runs import RunStore

    with RunStore(f"sqlite:///{tmp_path / 'state' / 'runs.sqlite'}") as store:
        assert store.get_run(result.run_id).status == "failed"


def test_cli_exit_code_4_and_one_error_line(
    tmp_path: Path,
    make_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Garbage(FakeChatModel):
        faults: Any = _garbage

    monkeypatch.setattr(factory, "FakeChatModel", Garbage)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(make_spec(run={"max_iterations": 1})))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["personagen", "run", str(path), "-q"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == cli.EXIT_FAILED
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "could not be parsed" in errors[0], errors
    assert "(fake)" in errors[0]


def _result(status: str, *pair_statuses: str) -> RunResult:
    pairs = {
        f"q{i}": QAPair(id=f"q{i}", question="Q?", status=s)  # type: ignore[arg-type]
        for i, s in enumerate(pair_statuses)
    }
    return RunResult(run_id="r", status=status, bundle_dir=None, pairs=pairs)


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (_result("done", "accepted", "rejected"), 0),
        (_result("done", "rejected", "unverified"), 3),
        (_result("done"), 3),
        (_result("failed"), 4),
        (_result("waiting_for_review", "accepted"), 5),
        (_result("budget_exhausted"), 6),
        (_result("stopped"), 6),
        (_result("interrupted"), 6),
    ],
)
def test_exit_codes(result: RunResult, code: int) -> None:
    assert cli._exit_code(result) == code


def test_every_exit_code_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for name in dir(cli):
        if name.startswith("EXIT_"):
            assert f"| {getattr(cli, name)} |" in table, name
