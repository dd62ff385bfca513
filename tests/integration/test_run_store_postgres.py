"""The run store on a real PostgreSQL server (psycopg 3), started by .ci/postgres.sh.

Skipped, with the reason shown, when PERSONAGEN_TEST_PG_URL is not set. Each module gets its
own schema (dropped at the end), so the tests see an empty store and leave nothing behind.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from personagen.cli_runs import runs_app
from personagen.store.runs import RunStore, RunStoreError, UnknownRun

from ..unit.test_run_store import (
    FinishedRun,
    assert_store_matches_bundle,
    finished_run,  # noqa: F401 - the module-scoped fixture, shared with the SQLite suite
    record,
)

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("PERSONAGEN_TEST_PG_URL")
if not PG_URL:
    pytest.skip(
        "PERSONAGEN_TEST_PG_URL is not set (source .ci/postgres.sh to start a server)",
        allow_module_level=True,
    )
psycopg = pytest.importorskip(
    "psycopg", reason="psycopg 3 is not installed: pip install 'personagen[postgres]'"
)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_schema(url: str, schema: str) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="module")
def schema_url() -> Iterator[str]:
    """A fresh schema on the test server, as a store URL whose search_path points at it."""
    assert PG_URL
    schema = f"pgtest_{secrets.token_hex(4)}"
    with psycopg.connect(_libpq(PG_URL), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _with_schema(PG_URL, schema)
    finally:
        with psycopg.connect(_libpq(PG_URL), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def store(schema_url: str) -> Iterator[RunStore]:
    with RunStore(schema_url) as opened:
        yield opened
        # Leave the schema empty for the next test.
        for run in opened.list_runs(limit=10_000):
            opened.delete_run(run.id)


def test_tables_live_in_the_test_schema(store: RunStore, schema_url: str) -> None:
    store.setup()
    schema = schema_url.rsplit("%3D", 1)[1]
    assert PG_URL
    with psycopg.connect(_libpq(PG_URL)) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s",
                (schema,),
            )
        }
    assert {"personagen_runs", "personagen_items", "personagen_stages"} <= tables


def test_record_a_run_and_read_it_back(store: RunStore, finished_run: FinishedRun) -> None:  # noqa: F811
    record(store, finished_run)
    assert_store_matches_bundle(store, finished_run)
    got = store.get_run(finished_run.run_id)
    assert got.started_at is not None and got.started_at.tzinfo is not None


def test_recording_again_is_idempotent(store: RunStore, finished_run: FinishedRun) -> None:  # noqa: F811
    record(store, finished_run)
    before = store.get_run(finished_run.run_id)
    for _ in range(2):
        store.record_finish(
            finished_run.run_id, finished_run.metadata, finished_run.pairs, finished_run.files
        )
    after = store.get_run(finished_run.run_id)
    assert after == before
    assert store.count_runs() == 1


def test_list_filters(store: RunStore, finished_run: FinishedRun) -> None:  # noqa: F811
    record(store, finished_run, "done-1")
    store.record_start("running-1", finished_run.spec)
    store.record_status("failed-1", "failed", "boom")
    assert {r.id for r in store.list_runs()} == {"done-1", "running-1", "failed-1"}
    assert [r.id for r in store.list_runs(status="done")] == ["done-1"]
    assert len(store.list_runs(limit=1)) == 1


def test_text_postgres_cannot_hold_is_cleaned(store: RunStore, finished_run: FinishedRun) -> None:  # noqa: F811
    pair = finished_run.pairs[0].model_copy(
        update={"question": "nul\x00byte? ünïcødé 🏠", "answer": "a\x00b"}
    )
    metadata = {
        **finished_run.metadata,
        "warnings": [{"level": "warning", "stage": "x", "message": "bad\x00", "item": pair.id}],
    }
    store.record_finish("nul-run", metadata, [pair], {})
    got = store.get_run("nul-run")
    assert got.items[0].question == "nul\ufffdbyte? ünïcødé 🏠"
    assert got.items[0].answer == "a\ufffdb"
    assert got.events[0].message == "bad\ufffd"


def _record_in_child(url: str, run: dict[str, Any], run_id: str, barrier: Any) -> str:
    from personagen.specfile import parse_spec
    from personagen.state.items import QAPair

    with RunStore(url) as child:
        barrier.wait(timeout=120)  # every child creates the tables at the same moment
        child.record_start(run_id, parse_spec(run["spec"]))
        child.record_finish(
            run_id, run["metadata"], [QAPair.model_validate(p) for p in run["pairs"]], run["files"]
        )
    return run_id


@pytest.mark.slow
def test_processes_create_the_schema_and_record_at_once(
    schema_url: str,
    finished_run: FinishedRun,  # noqa: F811
) -> None:
    # A schema no process has set up yet: every child races to create the tables.
    assert PG_URL
    fresh = f"pgrace_{secrets.token_hex(4)}"
    with psycopg.connect(_libpq(PG_URL), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{fresh}"')
    url = _with_schema(PG_URL, fresh)
    payload = {
        "spec": finished_run.spec.model_dump(mode="json"),
        "metadata": finished_run.metadata,
        "pairs": [p.model_dump(mode="json") for p in finished_run.pairs],
        "files": finished_run.files,
    }
    workers = 4
    try:
        # Spawn, never fork, with database connections around.
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager, context.Pool(workers) as pool:
            barrier = manager.Barrier(workers)
            done = pool.starmap(
                _record_in_child, [(url, payload, f"p-{i}", barrier) for i in range(workers)]
            )
        assert sorted(done) == [f"p-{i}" for i in range(workers)]
        with RunStore(url) as check:
            assert check.count_runs(status="done") == workers
            totals = finished_run.metadata["usage"]["totals"]
            assert check.get_run("p-3").total_tokens == totals["total_tokens"]
    finally:
        with psycopg.connect(_libpq(PG_URL), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{fresh}" CASCADE')


def test_cli_on_postgres(store: RunStore, finished_run: FinishedRun, schema_url: str) -> None:  # noqa: F811
    record(store, finished_run)
    runner = CliRunner()
    listed = runner.invoke(runs_app, ["list", "--db", schema_url], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert finished_run.run_id in listed.output
    shown = runner.invoke(
        runs_app,
        ["show", finished_run.run_id, "--db", schema_url, "--json"],
        env={"COLUMNS": "200"},
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["id"] == finished_run.run_id
    missing = runner.invoke(runs_app, ["show", "nope", "--db", schema_url])
    assert isinstance(missing.exception, UnknownRun)


def test_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="cannot open the run store") as info:
        RunStore("postgresql+psycopg://u:secret@127.0.0.1:1/db").list_runs()
    assert "secret" not in str(info.value) and "\n" not in str(info.value)
