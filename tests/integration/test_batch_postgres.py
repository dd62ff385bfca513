"""Batches on a real PostgreSQL server; a driver killed mid-batch, then `batch resume`.

The kill/resume test runs on SQLite (one file per run) and on Postgres checkpoints.

The server is the one `.ci/postgres.sh` exports as PERSONAGEN_TEST_PG_URL; without it the
`pg_server` fixture starts a throwaway one (when `initdb` is installed) on 127.0.0.1, and
otherwise the Postgres tests skip with the reason shown. Each test gets its own schema.

This module also holds what the Ray tests share: the fixtures, and `logged_model`, a fake
chat model factory that worker processes import to log every call to a per-run file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import pytest
from typer.testing import CliRunner

from personagen.llm.fake import FakeChatModel, FakeRequest

from ..unit.test_batch import (
    assert_matches_references,
    input_checkpoints,
    reference_runs,
    saved_calls,
    stage_counts,
    write_batch,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LOGGED_MODEL = "tests.integration.test_batch_postgres:logged_model"


# --- a fake model that leaves a trace, importable by any worker process -------------------


def logged_model(log: str, latency: float = 0.0) -> FakeChatModel:
    """A `FakeChatModel` appending one JSON line per answered call to `log`.

    Used through `ModelRef(LOGGED_MODEL, {"log": ".../{run_id}.log", ...})`, so each run
    logs to its own file whichever process (driver, Ray worker, resumed batch) runs it.
    """
    path = Path(log)
    path.parent.mkdir(parents=True, exist_ok=True)

    def record(request: FakeRequest) -> None:
        line = {"schema": request.schema_name, "pid": os.getpid(), "at": time.time()}
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")

    return FakeChatModel(latency=latency, faults=record)


def logged_calls(log_dir: Path, run_id: str) -> list[dict[str, Any]]:
    """The calls a run's model answered, in order."""
    path = log_dir / f"{run_id}.log"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


# --- a PostgreSQL server -------------------------------------------------------------------


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _pg_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name)
    for candidate in reversed(candidates):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def _as_owner(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0 and shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A libpq URL of an empty database on a PostgreSQL server on 127.0.0.1."""
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install '.[postgres]'")
    pytest.importorskip(
        "langgraph.checkpoint.postgres",
        reason="langgraph-checkpoint-postgres is not installed: pip install '.[postgres]'",
    )
    given = os.environ.get("PERSONAGEN_TEST_PG_URL")
    if given:
        yield _libpq(given)
        return
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PERSONAGEN_TEST_PG_URL and no initdb to start a server (apt postgresql)")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start postgres as its owner")
    folder = Path(tempfile.mkdtemp(prefix="personagen-batch-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = folder / "data"
    try:
        subprocess.run(
            _as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                       "-E", "UTF8", "--locale=C", "--no-sync"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"),
                       "-w", "-t", "60", "-o", options, "start"]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"could not start a throwaway postgres: {exc}")
    import psycopg

    base = f"postgresql://postgres@127.0.0.1:{port}"
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE personagen_batch")
    try:
        yield f"{base}/personagen_batch"
    finally:
        subprocess.run(
            _as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True, timeout=60,
        )  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh schema on the server, as a URL whose search_path points at it."""
    import psycopg

    schema = f"batch_{secrets.token_hex(4)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    joiner = "&" if "?" in pg_server else "?"
    try:
        yield f"{pg_server}{joiner}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextlib.contextmanager
def connection_limited(pg_url: str, limit: int) -> Iterator[str]:
    """`pg_url` as a new role that the server allows at most `limit` connections at once."""
    import psycopg

    role, password = f"batch_{secrets.token_hex(4)}", secrets.token_hex(8)
    schema = unquote(parse_qs(urlsplit(pg_url).query)["options"][0]).split("=", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT {limit}")
        conn.execute(f'GRANT ALL ON SCHEMA "{schema}" TO {role}')
    parts = urlsplit(pg_url)
    netloc = f"{role}:{password}@{parts.netloc.rsplit('@', 1)[-1]}"
    try:
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


# --- process helpers -----------------------------------------------------------------------


def start_driver(code: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """`python -c code args...` in its own session (so everything it starts can be found)."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    handle = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def session_processes(session: int) -> list[int]:
    """Live processes of a session (the driver's, when started by `start_driver`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def kill_session(session: int) -> None:
    """SIGKILL whatever is left of a session this test started."""
    for pid in session_processes(session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for(predicate: Any, *, timeout: float, what: str, proc: Any = None) -> None:
    """Poll `predicate` every 50 ms; fail naming `what` on timeout or if `proc` exits."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill_when_part_way(
    driver: Any, refs: dict[str, Any], logs: Path, batch_dir: Path, *, timeout: float
) -> None:
    """Kill -9 the batch driver once a run is done and another is part-way."""

    def part_way() -> bool:
        calls = {r: len(logged_calls(logs, r)) for r in refs}
        return batch_counts(batch_dir).get("done", 0) >= 1 and any(
            3 <= calls[r] <= refs[r]["calls"] - 3 for r in refs
        )

    wait_for(part_way, timeout=timeout, what="a finished and a part-way run", proc=driver)
    os.kill(driver.pid, signal.SIGKILL)  # the driver only: its workers may write on


def batch_counts(batch_dir: Path) -> dict[str, int]:
    """The counts in batch.json (empty before it exists)."""
    try:
        return json.loads((batch_dir / "batch.json").read_text(encoding="utf-8"))["counts"]
    except (OSError, ValueError, KeyError):
        return {}


DRIVER = """
import sys
from personagen.batch import ModelRef, run_batch
batch, out, state, db, backend, log_dir, latency = sys.argv[1:8]
run_batch(
    batch, out_dir=out, state_dir=state, checkpoint=db or None, backend=backend,
    concurrency=int(sys.argv[8]),
    chat_model=ModelRef("%s", {"log": log_dir + "/{run_id}.log", "latency": float(latency)}),
    ray_options={"runtime_env": {"env_vars": {"PYTHONPATH": "%s"}}} if backend == "ray" else None,
)
""" % (LOGGED_MODEL, REPO)  # noqa: UP031 - a script template


# --- tests -----------------------------------------------------------------------------------


async def test_local_batch_on_postgres_matches_single_runs(
    tmp_path: Path, corpus_dir: Path, pg_url: str
) -> None:
    from personagen.batch import ModelRef, arun_batch, load_batch

    plan = load_batch(write_batch(tmp_path))
    assert len(plan.items) == 8
    refs = await reference_runs(plan, tmp_path / "ref")
    logs = tmp_path / "logs"
    model = ModelRef(LOGGED_MODEL, {"log": f"{logs}/{{run_id}}.log", "latency": 0.05})
    # All 8 runs at once, as a role allowed 7 connections: the batch process holds its run
    # locks on one session and checkpoints through one pool of at most 4 connections
    # (the rest is slack for a closed connection the server has not yet counted out).
    # The role owns the checkpoint tables it creates, which go with it at the end.
    with connection_limited(pg_url, 7) as limited:
        report = await arun_batch(
            plan,
            out_dir=tmp_path / "out",
            state_dir=tmp_path / "state",
            checkpoint=limited.replace("postgresql://", "postgresql+psycopg://"),
            concurrency=8,
            chat_model=model,
        )
        assert report.status == "done", report.runs
        assert_matches_references(report.runs, refs)
        for item in plan.items:
            assert len(logged_calls(logs, item.run_id)) == refs[item.run_id]["calls"]
            assert await input_checkpoints(pg_url, item.run_id) == 1
        assert not (tmp_path / "state" / "checkpoints").exists()
        # Again, with no batch.json: every run is read back from Postgres, no model call.
        (tmp_path / "out" / "homes" / "batch.json").unlink()
        again = await arun_batch(
            plan,
            out_dir=tmp_path / "out",
            state_dir=tmp_path / "state",
            checkpoint=pg_url,
            chat_model=model,
        )
        assert again.status == "done"
        assert sum(len(logged_calls(logs, i.run_id)) for i in plan.items) == sum(
            r["calls"] for r in refs.values()
        )


HOLD_LOCK = """
import asyncio, sys
from personagen.batch.unit import run_lock
async def main():
    async with run_lock(sys.argv[1], sys.argv[2]) as held:
        print("held" if held else "missed", flush=True)
        await asyncio.sleep(600)
asyncio.run(main())
"""


async def test_advisory_lock_excludes_and_dies_with_its_holder(
    tmp_path: Path, make_spec: Any, pg_url: str
) -> None:
    from personagen.batch import run_or_resume
    from personagen.batch.unit import LOCKED, RunLocks, run_lock
    from personagen.specfile import parse_spec

    holder = start_driver(HOLD_LOCK, "locked-run", pg_url, log=tmp_path / "holder.log")
    try:
        wait_for(
            lambda: (tmp_path / "holder.log").read_text().strip() == "held",
            timeout=60, what="the lock holder", proc=holder,
        )  # fmt: skip
        spec = parse_spec(make_spec(run={"max_iterations": 1}))
        model = FakeChatModel()
        kwargs: dict[str, Any] = {
            "out_dir": tmp_path / "out", "state_dir": tmp_path / "state", "checkpoint": pg_url,
        }  # fmt: skip
        skipped = await run_or_resume("locked-run", spec, chat_model=model, **kwargs)
        assert skipped.status == LOCKED and not model.calls
        async with run_lock("other-run", pg_url) as other:
            assert other  # locks are per run
        # One session holds a process's locks; a second unit of the same run is refused
        # even though Postgres advisory locks are re-entrant within a session.
        async with RunLocks(pg_url) as locks, locks.hold("twin") as first:
            async with locks.hold("twin", timeout=0.3) as second:
                assert first and not second
        # The holder dies without unlocking: the server drops its session's locks.
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        started = time.monotonic()
        result = await run_or_resume(
            "locked-run", spec, chat_model=model, lock_timeout=30, **kwargs
        )
        assert result.status == "done" and time.monotonic() - started < 20
    finally:
        kill_session(holder.pid)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_driver_killed_mid_batch_then_batch_resume(
    tmp_path: Path, corpus_dir: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    from personagen.batch import load_batch
    from personagen.batch._checkpoints import run_checkpoint
    from personagen.batch.unit import has_started, is_finished, read_state
    from personagen.cli_batch import batch_app

    db = request.getfixturevalue("pg_url") if kind == "postgres" else ""
    store = db or str(tmp_path / "state" / "checkpoints")  # one SQLite file per run
    plan = load_batch(write_batch(tmp_path))
    refs = asyncio.run(reference_runs(plan, tmp_path / "ref"))
    logs = tmp_path / "logs"
    batch_dir = tmp_path / "out" / "homes"
    driver = start_driver(
        DRIVER, str(tmp_path / "homes.yaml"), str(tmp_path / "out"), str(tmp_path / "state"),
        db, "local", str(logs), "0.25", "3", log=tmp_path / "driver.log",
    )  # fmt: skip
    try:
        kill_when_part_way(driver, refs, logs, batch_dir, timeout=240)
        driver.wait(timeout=30)
    finally:
        kill_session(driver.pid)

    async def states() -> dict[str, Any]:
        return {
            i.run_id: await read_state(i.run_id, run_checkpoint(store, i.run_id))
            for i in plan.items
        }

    at_kill = asyncio.run(states())
    done_at_kill = {r for r, s in at_kill.items() if is_finished(s)}
    partial = {r for r, s in at_kill.items() if s.values and not is_finished(s)}
    assert done_at_kill and partial, (done_at_kill, partial)
    calls_at_kill = {r: len(logged_calls(logs, r)) for r in refs}
    bundles_at_kill = {
        r: (Path(at_kill[r].values["bundle_dir"]) / "metadata.json").stat().st_mtime_ns
        for r in done_at_kill
    }

    # `personagen batch resume` takes everything (backend, database, model) from the manifest.
    args = ["resume", "homes", "--out", str(tmp_path / "out"), "-q"]
    resumed = CliRunner().invoke(batch_app, args, env={"PERSONAGEN_BATCH_DB_URL": db})
    summary = json.loads((batch_dir / "batch.json").read_text())
    assert resumed.exit_code == 0, (
        resumed.exception,
        [(r["status"], r["error"]) for r in summary["runs"]],
    )
    assert summary["status"] == "done" and summary["resumed"] is True
    assert_matches_references(summary["runs"], refs)

    final = asyncio.run(states())
    for run_id, ref in refs.items():
        after = len(logged_calls(logs, run_id)) - calls_at_kill[run_id]
        # Never started over (unless its input was never saved), no node applied twice.
        started = 1 if has_started(at_kill[run_id]) or not at_kill[run_id].values else 2
        target = run_checkpoint(store, run_id)
        assert asyncio.run(input_checkpoints(target, run_id)) == started, run_id
        assert stage_counts(final[run_id].values) == ref["stages"], run_id
        if run_id in done_at_kill:
            assert after == 0, run_id  # a finished run is not run again
            path = Path(final[run_id].values["bundle_dir"]) / "metadata.json"
            assert path.stat().st_mtime_ns == bundles_at_kill[run_id]
        else:
            # Only what the checkpoint did not hold is redone.
            assert after == ref["calls"] - saved_calls(at_kill[run_id]), run_id
