"""The Ray backend on a local Ray cluster with Postgres checkpoints, in a network namespace.

Ray 2.60 reaches for the network even for a one-machine cluster (its dashboard asks the
cloud metadata address 169.254.169.254 and DNS which cloud it runs on, with usage stats
off), so its tests run where nothing but loopback exists: `test_ray_suite_in_a_network_namespace`
re-runs this module with `unshare --net` (a new network namespace holding only `lo`) and
PERSONAGEN_TEST_NETNS=1, and passes when every test inside passed. Outside, the inner tests
skip, saying so; inside, the outer one skips, and the `ray_cluster` fixture checks that
loopback is the only interface and that an outside address is unreachable.

Inside, Postgres is the server `.ci/postgres.sh` started (PERSONAGEN_TEST_PG_URL), reached
through its Unix socket (files are shared with the namespace, 127.0.0.1 is not); without one
the `pg_server` fixture starts a throwaway server on the namespace's own 127.0.0.1.

Everything skips, with the reason shown, when Ray is not installed (the `ray` extra), when
no network namespace can be made (needs root or CAP_SYS_ADMIN; `.ci/run` runs as root), or
when no PostgreSQL server can be had (see test_batch_postgres.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from typer.testing import CliRunner

if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed: pip install '.[ray]'", allow_module_level=True)

from personagen.batch import ModelRef, arun_batch, load_batch  # noqa: E402
from personagen.batch.summary import BatchProgress  # noqa: E402
from personagen.batch.unit import has_started, is_finished, read_state, run_lock  # noqa: E402

from ..unit.test_batch import (  # noqa: E402
    assert_matches_references,
    input_checkpoints,
    reference_runs,
    saved_calls,
    stage_counts,
    write_batch,
)
from .test_batch_postgres import (  # noqa: E402, F401 - fixtures shared with the Postgres suite
    DRIVER,
    LOGGED_MODEL,
    REPO,
    kill_session,
    kill_when_part_way,
    logged_calls,
    pg_server,
    pg_url,
    start_driver,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NETNS_ENV = "PERSONAGEN_TEST_NETNS"
"""Set to 1 in the network namespace the outer test makes for the Ray tests."""
IN_NETNS = os.environ.get(NETNS_ENV) == "1"
OUTER = "test_ray_suite_in_a_network_namespace"
in_netns = pytest.mark.skipif(
    not IN_NETNS, reason=f"runs in a loopback-only network namespace, started by {OUTER}"
)
INNER_TIMEOUT = 1200  # seconds for the whole inner run (about 1 min on 2 cores)
_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy", "ftp_proxy"}

RUNTIME_ENV = {"env_vars": {"PYTHONPATH": str(REPO)}}  # workers import the logged model


# --- the network namespace ---------------------------------------------------------------


def _namespace_tools() -> list[str]:
    """`unshare` and `ip`, or skip saying why a network namespace cannot be made here."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if not unshare or not ip:
        pytest.skip("the Ray tests need unshare (util-linux) and ip (iproute2) for a netns")
    probe = subprocess.run(
        [unshare, "--net", "--", ip, "link", "set", "lo", "up"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(
            "cannot make a network namespace for the Ray tests (needs root or CAP_SYS_ADMIN, "
            f"as in .ci/run): {probe.stderr.strip() or probe.returncode}"
        )
    return [unshare, ip]


def _socket_pg_url() -> str | None:
    """PERSONAGEN_TEST_PG_URL by the server's Unix socket, when `.ci/postgres.sh` started it.

    A Unix socket is a file, so it is reachable from another network namespace.
    """
    given, folder = os.environ.get("PERSONAGEN_TEST_PG_URL"), os.environ.get("PERSONAGEN_PG_DIR")
    if not given or not folder:
        return None
    parts = urlsplit(given)
    port = parts.port or 5432
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    if not (Path(folder) / f".s.PGSQL.{port}").exists():
        return None
    user = f"{parts.username}@" if parts.username else ""
    return f"postgresql://{user}{parts.path}?host={quote(folder, safe='')}&port={port}"


def _inner_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env.pop("PERSONAGEN_TEST_PG_URL", None)
    env.pop("PERSONAGEN_TEST_PG_DSN", None)
    url = _socket_pg_url()
    if url:
        env["PERSONAGEN_TEST_PG_URL"] = url
    env[NETNS_ENV] = "1"
    return env


def _outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """Each test's outcome (passed, failed, error, skipped) and message, from a JUnit XML."""
    found: dict[str, tuple[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            child = case.find(tag)
            if child is not None:
                outcome, message = tag.replace("failure", "failed"), child.get("message", "")
                break
        found[case.get("name", "")] = (outcome, message)
    return found


@pytest.mark.skipif(IN_NETNS, reason="already inside the network namespace")
def test_ray_suite_in_a_network_namespace(tmp_path: Path) -> None:
    unshare, ip = _namespace_tools()
    expected = sorted(n for n in globals() if n.startswith("test_") and n != OUTER)
    junit = tmp_path / "inner.xml"
    script = f'{shlex.quote(ip)} link set lo up && exec "$@"'
    argv = [
        unshare, "--net", "--", "sh", "-c", script, "sh",
        sys.executable, "-m", "pytest", str(Path(__file__)), "-p", "no:cacheprovider",
        f"--junitxml={junit}", "-o", "junit_family=xunit1",
    ]  # fmt: skip
    inner = subprocess.Popen(
        argv,
        cwd=REPO,
        env=_inner_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a hung run can be killed with all it started
    )
    try:
        output, _ = inner.communicate(timeout=INNER_TIMEOUT)
    except subprocess.TimeoutExpired:
        kill_session(inner.pid)
        output, _ = inner.communicate(timeout=60)
        pytest.fail(f"the Ray tests took over {INNER_TIMEOUT} s:\n{output[-20000:]}")
    finally:
        kill_session(inner.pid)  # whatever a killed test left behind
    outcomes = _outcomes(junit) if junit.is_file() else {}
    ran = {name: outcomes.get(name, ("missing", "")) for name in expected}
    if ran and all(outcome == "skipped" for outcome, _ in ran.values()):
        pytest.skip("in the network namespace: " + "; ".join(sorted({m for _, m in ran.values()})))
    assert inner.returncode == 0 and all(o == "passed" for o, _ in ran.values()), (
        f"the Ray tests in the network namespace (exit {inner.returncode}): {ran}\n"
        + output[-20000:]
    )


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A Ray cluster for this module, on 127.0.0.1 in a namespace with no other network."""
    from personagen.batch.ray_backend import start_ray

    assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()
    with pytest.raises(OSError):  # no route out: fails at once (ENETUNREACH)
        socket.create_connection(("169.254.169.254", 80), timeout=5).close()
    module, started = start_ray("local", init_kwargs={"num_cpus": 2, "runtime_env": RUNTIME_ENV})
    try:
        assert module.get_runtime_context().gcs_address.startswith("127.0.0.1:")
        assert {n["NodeManagerAddress"] for n in module.nodes()} == {"127.0.0.1"}
        yield module
    finally:
        if started:
            module.shutdown()


def _model(logs: Path, latency: float) -> ModelRef:
    return ModelRef(LOGGED_MODEL, {"log": f"{logs}/{{run_id}}.log", "latency": latency})


@in_netns
async def test_ray_batch_matches_single_runs(
    tmp_path: Path,
    corpus_dir: Path,
    pg_url: str,  # noqa: F811 - the fixture imported above
    ray_cluster: Any,
) -> None:
    plan = load_batch(write_batch(tmp_path))
    assert len(plan.items) == 8
    refs = await reference_runs(plan, tmp_path / "ref")
    logs = tmp_path / "logs"
    seen: list[BatchProgress] = []
    report = await arun_batch(
        plan,
        backend="ray",
        out_dir=tmp_path / "out",
        state_dir=tmp_path / "state",
        checkpoint=pg_url,
        concurrency=3,
        chat_model=_model(logs, 0.05),
        progress=seen.append,
        ray_actors=2,
        ray_options={"runtime_env": RUNTIME_ENV},
    )
    assert report.status == "done", report.runs
    assert_matches_references(report.runs, refs)
    pids = set()
    for item in plan.items:
        calls = logged_calls(logs, item.run_id)
        assert len(calls) == refs[item.run_id]["calls"]
        assert len({c["pid"] for c in calls}) == 1  # one worker ran it
        pids.add(calls[0]["pid"])
        assert await input_checkpoints(pg_url, item.run_id) == 1
    assert len(pids) == 2 and os.getpid() not in pids  # both actors, never the driver
    assert seen[-1].done == 8 and seen[-1].tokens == report.summary["tokens"] > 0
    manifest = json.loads((report.batch_dir / "manifest.json").read_text())
    assert manifest["ray"] == {"address": "local", "actors": 2, "max_retries": 3}
    assert manifest["chat_model"]["factory"] == LOGGED_MODEL


@in_netns
async def test_worker_killed_mid_batch_is_retried(
    tmp_path: Path,
    corpus_dir: Path,
    pg_url: str,  # noqa: F811 - the fixture imported above
    ray_cluster: Any,
) -> None:
    plan = load_batch(write_batch(tmp_path))
    refs = await reference_runs(plan, tmp_path / "ref")
    logs = tmp_path / "logs"
    done: set[str] = set()

    def progress(p: BatchProgress) -> None:
        if p.run_id and p.status == "done":
            done.add(p.run_id)

    batch = asyncio.create_task(
        arun_batch(
            plan,
            backend="ray",
            out_dir=tmp_path / "out",
            state_dir=tmp_path / "state",
            checkpoint=pg_url,
            concurrency=3,
            chat_model=_model(logs, 0.3),
            progress=progress,
            lock_timeout=60,
            ray_actors=2,
            ray_max_retries=2,
            ray_options={"runtime_env": RUNTIME_ENV},
        )
    )
    # A worker with two runs part-way gets kill -9.
    victim = None
    deadline = time.monotonic() + 240
    while victim is None:
        await asyncio.sleep(0.05)
        assert not batch.done(), batch.result()
        assert time.monotonic() < deadline, "no worker ever had two runs part-way"
        part_way: dict[int, set[str]] = {}
        for run_id, ref in refs.items():
            calls = logged_calls(logs, run_id)
            if run_id not in done and 2 <= len(calls) <= ref["calls"] - 4:
                part_way.setdefault(calls[-1]["pid"], set()).add(run_id)
        victim = next((pid for pid, runs in part_way.items() if len(runs) >= 2), None)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    # Freeze the victim's runs as the kill left them: the server drops the dead worker's
    # locks, we take them before the restarted worker does, read the state, let go.
    touched = {r for r in refs if any(c["pid"] == victim for c in logged_calls(logs, r))}
    at_kill = {}
    for run_id in touched:
        async with run_lock(run_id, pg_url, timeout=20) as held:
            assert held, f"run {run_id} still locked 20 s after its worker died"
            at_kill[run_id] = await read_state(run_id, pg_url)
    interrupted = {r for r, s in at_kill.items() if not is_finished(s)}
    assert len(interrupted) >= 2, at_kill

    report = await asyncio.wait_for(batch, timeout=300)
    assert report.status == "done", report.runs
    assert_matches_references(report.runs, refs)
    for run_id, ref in refs.items():
        calls = logged_calls(logs, run_id)
        after = [c for c in calls if c["pid"] != victim]
        assert not [c for c in calls if c["pid"] == victim and c["at"] > killed_at + 0.5]
        assert stage_counts((await read_state(run_id, pg_url)).values) == ref["stages"]
        started = (
            2
            if run_id in at_kill and at_kill[run_id].values and not has_started(at_kill[run_id])
            else 1
        )
        assert await input_checkpoints(pg_url, run_id) == started, run_id
        if run_id in interrupted:
            # Retried in a new worker, which redid only what the checkpoint did not hold.
            assert after and {c["pid"] for c in after} != {victim}
            assert len(after) == ref["calls"] - saved_calls(at_kill[run_id]), run_id
        elif run_id in touched:
            assert not after, run_id  # finished before the kill: not run again
        else:
            assert len(calls) == ref["calls"], run_id


@in_netns
def test_driver_killed_mid_batch_then_batch_resume(
    tmp_path: Path,
    corpus_dir: Path,
    pg_url: str,  # noqa: F811 - the fixture imported above
    ray_cluster: Any,
) -> None:
    from personagen.cli_batch import batch_app

    plan = load_batch(write_batch(tmp_path))
    refs = asyncio.run(reference_runs(plan, tmp_path / "ref"))
    logs = tmp_path / "logs"
    batch_dir = tmp_path / "out" / "homes"
    # The driver starts its own local Ray cluster, as `personagen batch run --backend ray`.
    driver = start_driver(
        DRIVER, str(tmp_path / "homes.yaml"), str(tmp_path / "out"), str(tmp_path / "state"),
        pg_url, "ray", str(logs), "0.3", "3", log=tmp_path / "driver.log",
    )  # fmt: skip
    try:
        kill_when_part_way(driver, refs, logs, batch_dir, timeout=300)
        killed_at = time.time()
        driver.wait(timeout=30)
        summary_at_kill = json.loads((batch_dir / "batch.json").read_text())
        done_at_kill = {r["id"] for r in summary_at_kill["runs"] if r["status"] == "done"}
        bundles = {
            r["id"]: (Path(r["bundle_dir"]) / "metadata.json").stat().st_mtime_ns
            for r in summary_at_kill["runs"]
            if r["id"] in done_at_kill
        }
        assert done_at_kill and len(done_at_kill) < len(refs)

        # Straight away, as after a crash: the old workers' runs wait on their locks.
        args = ["resume", "homes", "--out", str(tmp_path / "out"), "-q", "--lock-timeout", "60"]
        resumed = CliRunner().invoke(batch_app, args, env={"PERSONAGEN_BATCH_DB_URL": pg_url})
    finally:
        kill_session(driver.pid)
    summary = json.loads((batch_dir / "batch.json").read_text())
    statuses = [(r["status"], r["error"]) for r in summary["runs"]]
    assert resumed.exit_code == 0, (resumed.exception, statuses)
    assert summary["status"] == "done" and summary["backend"] == "ray"
    assert_matches_references(summary["runs"], refs)
    for run_id, ref in refs.items():
        final = asyncio.run(read_state(run_id, pg_url))
        assert stage_counts(final.values) == ref["stages"], run_id  # no node applied twice
        if run_id in done_at_kill:
            calls = logged_calls(logs, run_id)
            assert not [c for c in calls if c["at"] > killed_at], run_id
            metadata = Path(final.values["bundle_dir"]) / "metadata.json"
            assert metadata.stat().st_mtime_ns == bundles[run_id]
