"""The run store on SQLite: a real fake run recorded and read back, idempotency, filters, CLI."""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_socket import disable_socket, enable_socket
from sqlalchemy import func, select
from typer.testing import CliRunner

from personagen.api import arun
from personagen.cli_runs import runs_app
from personagen.errors import PersonaGenError, RunNotFound
from personagen.llm.fake import FakeChatModel, FakeRequest
from personagen.specfile import parse_spec
from personagen.state.items import QAPair
from personagen.store import runs as runs_module
from personagen.store.runs import (
    ArtifactRow,
    EventRow,
    ItemRow,
    RunStore,
    RunStoreError,
    ScoreRow,
    StageRow,
    UnknownRun,
    default_db_url,
)

from ..conftest import CORPUS

CUSTOM = "Can I buy with a five percent deposit?"


@dataclass
class FinishedRun:
    """A fake run driven through the real graph, and what it left on disk."""

    run_id: str
    spec: Any
    metadata: dict[str, Any]
    pairs: list[QAPair]
    files: dict[str, str]
    bundle_dir: Path


def _spec_mapping(docs: Path) -> dict[str, Any]:
    return {
        "persona": {
            "name": "Maya",
            "description": "First-time home buyer and nurse on shifts.",
            "expertise": "novice",
            "goals": ["buy a flat", "learn about solicitor fees"],
            "pain_points": ["worries about zoological taxonomy"],
            "custom_questions": [CUSTOM],
        },
        "goal": {"name": "qa", "params": {"num_questions": 3, "selftest": False}},
        "data": [{"path": str(docs)}],
        "run": {"max_iterations": 2, "max_concurrency": 4},
        "llm": {"provider": "fake"},
    }


def drive_fake_run(root: Path, run_id: str = "run-a") -> FinishedRun:
    """Drive `arun` with the fake model; the custom question always fails persona fit."""
    docs = root / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for name, text in CORPUS.items():
        (docs / name).write_text(text, encoding="utf-8")

    def persona_fit(request: FakeRequest) -> dict[str, Any]:
        if "five percent deposit" in request.tag("question")[0]:
            return {"reason": "too vague for Maya", "question_fit": 5, "answer_fit": 1}
        return {"reason": "fits", "question_fit": 5, "answer_fit": 5}

    spec = parse_spec(_spec_mapping(docs))
    result = asyncio.run(
        arun(
            spec,
            run_id=run_id,
            chat_model=FakeChatModel(responders={"PersonaFitOut": persona_fit}),
            out_dir=root / "out",
            state_dir=root / "state",
        )
    )
    assert result.status == "done"
    bundle = result.bundle_dir
    metadata = json.loads((bundle / "metadata.json").read_text())
    files = {p.name: str(p) for p in sorted(bundle.iterdir()) if p.is_file()}
    return FinishedRun(run_id, spec, metadata, list(result.pairs.values()), files, bundle)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    # Module-scoped fixtures start before the per-test socket guard: block sockets here too.
    disable_socket(allow_unix_socket=True)
    try:
        return drive_fake_run(tmp_path_factory.mktemp("fake-run"))
    finally:
        enable_socket()


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with RunStore(f"sqlite:///{tmp_path / 'runs.sqlite'}") as opened:
        yield opened


def record(store: RunStore, run: FinishedRun, run_id: str | None = None) -> str:
    rid = run_id or run.run_id
    store.record_start(rid, run.spec)
    store.record_status(rid, "running")
    store.record_finish(rid, run.metadata, run.pairs, run.files)
    return rid


def assert_store_matches_bundle(store: RunStore, run: FinishedRun) -> None:
    """Every figure the store holds equals metadata.json (read back from disk)."""
    metadata = json.loads((run.bundle_dir / "metadata.json").read_text())
    got = store.get_run(run.run_id)
    usage = metadata["usage"]
    totals = usage["totals"]

    assert got.status == metadata["status"] == "done"
    assert got.goal == "qa" and got.persona == "Maya" and got.model == metadata["model"]
    assert got.started_at is not None and got.ended_at is not None
    assert got.started_at.timestamp() == pytest.approx(metadata["started_at"], abs=1e-5)
    assert got.ended_at.timestamp() == pytest.approx(metadata["ended_at"], abs=1e-5)
    assert got.runtime_seconds == metadata["runtime_seconds"]
    assert got.iterations == metadata["iterations"]
    assert got.llm_calls == totals["llm_calls"]
    assert got.input_tokens == totals["input_tokens"]
    assert got.output_tokens == totals["output_tokens"]
    assert got.total_tokens == totals["total_tokens"]
    assert got.cache_hits == totals["cache_hits"]
    assert got.baseline_met is metadata["baseline_met"]
    assert got.baseline == metadata["baseline"]
    assert got.final_scores == metadata["final_scores"]
    assert got.counts == metadata["counts"]
    assert (got.accepted, got.rejected) == (
        metadata["counts"]["accepted"],
        metadata["counts"]["rejected"],
    )
    assert got.recommendations == metadata["recommendations"]
    assert got.bundle_dir == str(run.bundle_dir)

    # Usage per model.
    assert {u.model: u.model_dump(exclude={"model"}) for u in got.token_usage} == {
        model: {k: pytest.approx(v) for k, v in row.items()}
        for model, row in usage["per_model"].items()
    }
    # Stages: (node, iteration) rows sum to the per-node and per-iteration figures.
    per_node: dict[str, dict[str, float]] = {}
    per_iteration: dict[str, dict[str, float]] = {}
    for stage in got.stages:
        node = per_node.setdefault(stage.node, {"runs": 0, "llm_calls": 0, "tokens": 0, "s": 0.0})
        node["runs"] += stage.runs
        node["llm_calls"] += stage.llm_calls
        node["tokens"] += stage.input_tokens + stage.output_tokens
        node["s"] += stage.seconds
        it = per_iteration.setdefault(str(stage.iteration), {"llm_calls": 0, "tokens": 0})
        it["llm_calls"] += stage.llm_calls
        it["tokens"] += stage.input_tokens + stage.output_tokens
    assert set(per_node) == set(usage["per_node"])
    for name, row in usage["per_node"].items():
        assert per_node[name]["runs"] == row["runs"]
        assert per_node[name]["llm_calls"] == row["llm_calls"]
        assert per_node[name]["tokens"] == row["input_tokens"] + row["output_tokens"]
        assert per_node[name]["s"] == pytest.approx(row["seconds"], abs=2e-3)
    for key, row in usage["per_iteration"].items():
        assert per_iteration[key] == {"llm_calls": row["llm_calls"], "tokens": row["tokens"]}
    assert sum(s.runs for s in got.stages) == len(metadata["stages"])

    # Scores per iteration.
    assert [s.model_dump() for s in got.scores] == metadata["scores_per_iteration"]

    # Items, events, artifacts.
    assert {i.id: i.status for i in got.items} == {p.id: p.status for p in run.pairs}
    by_id = {p.id: p for p in run.pairs}
    for item in got.items:
        pair = by_id[item.id]
        assert (item.question, item.answer, item.scores) == (
            pair.question,
            pair.answer,
            pair.scores,
        )
        assert item.reasons == pair.feedback and item.judge_reasons == pair.reasons
    assert [(e.level, e.stage, e.message, e.item_id) for e in got.events] == [
        (e["level"], e["stage"], e["message"], e["item"])
        for e in [*metadata["warnings"], *metadata["errors"]]
    ]
    assert {a.name: a.path for a in got.artifacts} == run.files
    for artifact in got.artifacts:
        assert artifact.bytes == Path(artifact.path).stat().st_size
        assert artifact.sha256 and len(artifact.sha256) == 64


def _child_counts(store: RunStore, run_id: str) -> dict[str, int]:
    assert store._sessions is not None
    with store._sessions() as session:
        return {
            model.__tablename__: session.scalar(
                select(func.count()).select_from(model).where(model.run_id == run_id)
            )
            or 0
            for model in (StageRow, ScoreRow, ItemRow, EventRow, ArtifactRow)
        }


# ---------------------------------------------------------------------------------------------


def test_the_fake_run_has_what_the_store_needs(finished_run: FinishedRun) -> None:
    statuses = {p.status for p in finished_run.pairs}
    assert {"accepted", "rejected"} <= statuses
    assert len(finished_run.metadata["scores_per_iteration"]) == 2
    assert finished_run.metadata["warnings"]
    assert "metadata.json" in finished_run.files


def test_record_a_run_and_read_it_back(store: RunStore, finished_run: FinishedRun) -> None:
    record(store, finished_run)
    assert_store_matches_bundle(store, finished_run)
    got = store.get_run(finished_run.run_id)
    assert got.spec is not None and got.spec["persona"]["custom_questions"] == [CUSTOM]
    assert got.provider == "fake"
    rejected = [i for i in got.items if i.status == "rejected"]
    assert rejected and all(i.reasons for i in rejected)
    assert any("persona_fit" in r for i in rejected for r in i.reasons)


def test_recording_again_replaces_child_rows(store: RunStore, finished_run: FinishedRun) -> None:
    rid = record(store, finished_run)
    first = _child_counts(store, rid)
    assert all(first.values()), first
    store.record_finish(rid, finished_run.metadata, finished_run.pairs, finished_run.files)
    store.record_finish(rid, finished_run.metadata, finished_run.pairs, finished_run.files)
    assert _child_counts(store, rid) == first
    assert store.count_runs() == 1
    assert_store_matches_bundle(store, finished_run)

    # A re-record with fewer pairs and no warnings drops the old rows.
    fewer = finished_run.pairs[:1]
    metadata = {**finished_run.metadata, "warnings": [], "errors": []}
    store.record_finish(rid, metadata, fewer, {})
    counts = _child_counts(store, rid)
    assert counts["personagen_items"] == 1 and counts["personagen_events"] == 0
    assert counts["personagen_artifacts"] == 0
    assert counts["personagen_stages"] == first["personagen_stages"]


def test_the_store_holds_no_secrets(store: RunStore, tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "persona": "A nurse buying a flat",
            "data": [{"url": "https://docs.example.org/a.html?token=abc123&page=2"}],
            "llm": {
                "provider": "openai",
                "model": "gpt-x",
                "base_url": "https://maya:hunter2@llm.example.org/v1",
            },
        }
    )
    store.record_start("secret-run", spec)
    stored = store.get_run("secret-run").spec
    text = json.dumps(stored)
    assert "hunter2" not in text and "abc123" not in text
    assert stored is not None
    assert stored["llm"]["base_url"] == "https://maya:***@llm.example.org/v1"
    assert stored["llm"]["api_key_env"] == "OPENAI_API_KEY"  # a variable's name, not a secret
    assert "page=2" in stored["data"][0]["url"]
    assert store.get_run("secret-run").model == "gpt-x"


def test_status_transitions(store: RunStore, finished_run: FinishedRun) -> None:
    store.record_start("r1", finished_run.spec)
    run = store.get_run("r1")
    assert run.status == "running" and run.ended_at is None and run.started_at is not None
    store.record_status("r1", "budget_exhausted", "token budget of 10 reached")
    run = store.get_run("r1")
    assert run.status == "budget_exhausted" and run.reason == "token budget of 10 reached"
    assert run.ended_at is not None and run.runtime_seconds is not None
    started = run.started_at
    store.record_start("r1", finished_run.spec)  # resumed: same start, open again
    run = store.get_run("r1")
    assert run.status == "running" and run.ended_at is None and run.started_at == started
    store.record_status("r2", "failed", "boom")  # unknown run: recorded, not an error
    assert store.get_run("r2").status == "failed"


def test_list_filters_limits_and_order(store: RunStore, finished_run: FinishedRun) -> None:
    record(store, finished_run, "done-1")
    store.record_start("running-1", finished_run.spec)
    store.record_start("failed-1", finished_run.spec)
    store.record_status("failed-1", "failed", "boom")
    record(store, finished_run, "done-2")

    assert {r.id for r in store.list_runs()} == {"done-1", "done-2", "running-1", "failed-1"}
    assert {r.id for r in store.list_runs(status="done")} == {"done-1", "done-2"}
    assert [r.id for r in store.list_runs(status="failed")] == ["failed-1"]
    assert store.list_runs(status="interrupted") == []
    assert len(store.list_runs(limit=2)) == 2
    assert store.count_runs() == 4 and store.count_runs(status="done") == 2
    newest = store.list_runs()
    assert [r.started_at for r in newest] == sorted((r.started_at for r in newest), reverse=True)
    done = store.list_runs(status="done")[0]
    assert done.accepted == finished_run.metadata["counts"]["accepted"]
    assert done.total_tokens == finished_run.metadata["usage"]["totals"]["total_tokens"]


def test_unknown_run_is_a_clear_error(store: RunStore) -> None:
    with pytest.raises(UnknownRun, match="'nope' is not in the run store sqlite:///") as info:
        store.get_run("nope")
    assert isinstance(info.value, PersonaGenError) and isinstance(info.value, RunNotFound)
    with pytest.raises(UnknownRun):
        store.delete_run("nope")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "bad database URL 'not a url'"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("oracle+cx://u:pw@h/db", "unsupported database 'oracle'"),
        ("sqlite:////proc/no/such/dir/runs.sqlite", "sqlite:////proc/no/such/dir/runs.sqlite"),
    ],
)
def test_bad_urls_are_one_clear_error(url: str, message: str) -> None:
    with pytest.raises(RunStoreError, match="^.*$") as info:
        RunStore(url).list_runs()
    text = str(info.value)
    assert message in text and "\n" not in text
    assert "pw" not in text


def test_default_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PERSONAGEN_DB_URL", raising=False)
    with RunStore() as default:
        assert default.list_runs() == []
    assert (tmp_path / ".personagen" / "runs.sqlite").is_file()
    monkeypatch.setenv("PERSONAGEN_DB_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    with RunStore() as from_env:
        from_env.record_status("x", "failed")
    assert (tmp_path / "env.sqlite").is_file()
    monkeypatch.setenv("PERSONAGEN_DB_URL", "postgres://u:secret@h/db")
    store = RunStore()
    assert store.url.drivername == "postgresql+psycopg"  # bare postgres URLs get psycopg 3
    assert "secret" not in store.display_url


def test_default_url_in_the_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERSONAGEN_DB_URL", raising=False)
    assert default_db_url(tmp_path / "state") == f"sqlite:///{tmp_path / 'state' / 'runs.sqlite'}"
    assert default_db_url() == "sqlite:///.personagen/runs.sqlite"
    monkeypatch.setenv("PERSONAGEN_DB_URL", "sqlite:///elsewhere.sqlite")
    assert default_db_url(tmp_path) == "sqlite:///elsewhere.sqlite"


async def test_arecord_logs_store_errors_instead_of_raising(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, finished_run: FinishedRun
) -> None:
    broken = RunStore("sqlite:////proc/no/such/dir/runs.sqlite")
    with caplog.at_level("WARNING", logger="personagen.store.runs"):
        assert await broken.arecord("record_status", "x", "failed", "boom") is False
    assert "record_status failed" in caplog.text and "cannot create" in caplog.text
    with RunStore(f"sqlite:///{tmp_path / 'ok.sqlite'}") as good:
        assert await good.arecord("record_start", "x", finished_run.spec) is True
        assert await good.arecord("record_status", "x", "interrupted", reason="killed")
        assert good.get_run("x").reason == "killed"


def test_schema_creation_is_idempotent(tmp_path: Path, finished_run: FinishedRun) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    for _ in range(3):
        with RunStore(url) as again:
            again.setup()
            again.setup()
    with RunStore(url) as one, RunStore(url) as two:
        record(one, finished_run)
        assert two.get_run(finished_run.run_id).total_tokens > 0


def test_in_memory_store(finished_run: FinishedRun) -> None:
    with RunStore("sqlite://") as memory:
        record(memory, finished_run)
        assert_store_matches_bundle(memory, finished_run)


def test_threads_record_at_once(store: RunStore, finished_run: FinishedRun) -> None:
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            record(store, finished_run, f"t-{index}")
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert store.count_runs(status="done") == 8


def _record_at_once(url: str, run: FinishedRun, prefix: str, writers: int, rounds: int) -> None:
    """`writers` threads, each with its own store (as the runs of a batch), record at once."""
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def work(index: int) -> None:
        with RunStore(url) as own:
            try:
                start.wait()
                for round_ in range(rounds):
                    rid = record(own, run, f"{prefix}-{index}-{round_}")
                    assert own.get_run(rid).status == "done"
            except BaseException as exc:  # noqa: BLE001 - collected and raised below
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


WRITER = """
import pickle, sys
from tests.unit.test_run_store import _record_at_once
url, run_file, prefix = sys.argv[1:4]
with open(run_file, "rb") as handle:
    run = pickle.load(handle)
_record_at_once(url, run, prefix, writers=8, rounds=2)
"""


@pytest.mark.slow
def test_many_writers_at_once_never_find_the_database_locked(
    tmp_path: Path, finished_run: FinishedRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    # 24 stores of one process (a batch's runs) write at once while SQLite's own lock wait
    # is cut to 20 ms: they must queue on the process's lock, not on SQLite's.
    monkeypatch.setattr(runs_module, "SQLITE_BUSY_TIMEOUT", 0.02)
    _record_at_once(url, finished_run, "thread", writers=24, rounds=3)
    monkeypatch.undo()
    # Three processes of 8 writers each on the same file (Ray workers on one machine)
    # wait on SQLite's lock.
    run_file = tmp_path / "run.pickle"
    run_file.write_bytes(pickle.dumps(finished_run))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(run_file), f"proc{n}"],
            cwd=Path(__file__).resolve().parents[2],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in range(3)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], outputs
    with RunStore(url) as store:
        assert store.count_runs(status="done") == 24 * 3 + 3 * 8 * 2
        detail = store.get_run("proc2-7-1")
        assert {i.id for i in detail.items} == {p.id for p in finished_run.pairs}


# --- CLI --------------------------------------------------------------------------------------


runner = CliRunner()


def _invoke(*args: str) -> Any:
    return runner.invoke(runs_app, list(args), env={"COLUMNS": "200", "NO_COLOR": "1"})


def test_cli_list(store: RunStore, finished_run: FinishedRun) -> None:
    record(store, finished_run)
    store.record_start("still-running", finished_run.spec)
    url = store.display_url
    result = _invoke("list", "--db", url)
    assert result.exit_code == 0, result.output
    counts = finished_run.metadata["counts"]
    line = next(row for row in result.output.splitlines() if finished_run.run_id in row)
    for text in ("done", "qa", "Maya", "fake-chat", f"{counts['accepted']}/{counts['rejected']}"):
        assert text in line
    assert f"{finished_run.metadata['usage']['totals']['total_tokens']:,}" in line
    assert "still-running" in result.output

    only_done = _invoke("list", "--db", url, "--status", "done")
    assert finished_run.run_id in only_done.output and "still-running" not in only_done.output
    as_json = json.loads(_invoke("list", "--db", url, "--json").output)
    assert {r["id"] for r in as_json} == {finished_run.run_id, "still-running"}
    empty = _invoke("list", "--db", url, "--status", "interrupted")
    assert empty.exit_code == 0 and "no runs recorded" in empty.output


def test_cli_show(store: RunStore, finished_run: FinishedRun) -> None:
    record(store, finished_run)
    result = _invoke("show", finished_run.run_id, "--db", store.display_url)
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "stages",
        "generate_questions",
        "scores per iteration",
        "persona_fit",
        "warnings (1)",
        "baseline not met",
        "recommendations",
        str(finished_run.bundle_dir),
        "metadata.json",
    ):
        assert text in out, text
    data = json.loads(
        _invoke("show", finished_run.run_id, "--db", store.display_url, "--json").output
    )
    assert data["total_tokens"] == finished_run.metadata["usage"]["totals"]["total_tokens"]
    assert len(data["scores"]) == 2


def test_cli_report_rewrites_the_html(store: RunStore, finished_run: FinishedRun) -> None:
    record(store, finished_run)
    result = _invoke("report", finished_run.run_id, "--db", store.display_url)
    assert result.exit_code == 0, result.output
    report = finished_run.bundle_dir / "report.html"
    assert result.output.strip() == str(report) and report.is_file()
    assert 'id="plot-scores"' in report.read_text()


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("show", "nope"), UnknownRun, "'nope' is not in the run store"),
        (("report", "nope"), UnknownRun, "'nope' is not in the run store"),
        (("list", "--db", "mysql://h/db"), RunStoreError, "unsupported database 'mysql'"),
        (("list", "--db", "::"), RunStoreError, "bad database URL"),
    ],
)
def test_cli_errors_are_persona_gen_errors(
    store: RunStore, args: tuple[str, ...], error: type[Exception], message: str
) -> None:
    full = list(args) if "--db" in args else [*args, "--db", store.display_url]
    result = runner.invoke(runs_app, full)
    assert result.exit_code != 0
    assert isinstance(result.exception, error) and isinstance(result.exception, PersonaGenError)
    assert message in str(result.exception)
