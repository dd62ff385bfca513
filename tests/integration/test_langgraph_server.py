"""The graph under `langgraph dev`, from the repo's langgraph.json, driven with `langgraph_sdk`.

A run (fake provider) pauses at the questions review, is resumed with `Command(resume=...)`
editing one question, and finishes with its bundle written. The server must not reach the
network: an audit hook in the server process (a `sitecustomize` on its PYTHONPATH) records
every connection and DNS lookup to a host other than this one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import EXAMPLE_SPEC, REPO

pytest.importorskip("langgraph_api", reason="needs the test extra: langgraph-cli[inmem]")
langgraph_sdk = pytest.importorskip("langgraph_sdk")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

AUDIT_HOOK = """
import os, sys

_LOG = os.environ["PERSONAGEN_NET_AUDIT"]
_LOCAL = {"127.0.0.1", "localhost", "::1", "0.0.0.0", ""}


def _outside(event, args):
    if event == "socket.connect":
        address = args[1]
        host = address[0] if isinstance(address, tuple) else None  # None: a unix socket
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else args[0]
    else:
        return
    if host is not None and str(host) not in _LOCAL:
        with open(_LOG, "a") as log:
            log.write(f"{event} {host}\\n")


with open(_LOG, "a") as log:
    log.write(f"audit on in {os.getpid()}\\n")
sys.addaudithook(_outside)
"""

# What `langgraph dev` would otherwise send out: the CLI's analytics, a PyPI version check,
# LangSmith traces; the metadata beacon only runs with a license key (none is passed).
OFFLINE_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "RAGAS_DO_NOT_TRACK": "true",
    "HF_HUB_OFFLINE": "1",
    "NO_COLOR": "1",
}
SECRETS = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    "LANGSMITH_CONTROL_PLANE_API_KEY",
    "OPENAI_API_KEY",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`langgraph dev` on 127.0.0.1, run from a folder holding the repo's langgraph.json."""
    langgraph = Path(sys.executable).parent / "langgraph"
    if not langgraph.is_file():
        pytest.skip("the langgraph CLI is not installed (test extra: langgraph-cli[inmem])")
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(REPO / "langgraph.json", app / "langgraph.json")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    audit = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env.update(OFFLINE_ENV)
    env.update(
        PERSONAGEN_NET_AUDIT=str(audit),
        PYTHONPATH=os.pathsep.join([str(hook), *filter(None, [env.get("PYTHONPATH")])]),
        PERSONAGEN_OUT_DIR=str(tmp_path / "out"),
        PERSONAGEN_STATE_DIR=str(tmp_path / "state"),
    )
    log_path = tmp_path / "server.log"
    command = [
        str(langgraph), "dev", "--host", "127.0.0.1", "--port", str(_free_port()),
        "--no-browser", "--no-reload",
        # The nodes do short file and SQLite I/O on the event loop; the dev server's
        # blocking-call detector would stop the run at the first one.
        "--allow-blocking",
    ]  # fmt: skip
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            text = re.sub(r"\x1b\[[0-9;]*m", "", log_path.read_text(errors="replace"))
            found = re.search(r"API: (http://127\.0\.0\.1:\d+)", text)
            if found and "Application started" in text:
                url = found.group(1)
                break
            time.sleep(0.25)
        if url is None:
            pytest.fail(f"langgraph dev did not start:\n{log_path.read_text()[-3000:]}")
        yield {"url": url, "log": log_path, "audit": audit, "out": tmp_path / "out",
               "state": tmp_path / "state"}  # fmt: skip
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


async def test_a_run_pauses_for_review_and_resumes_under_langgraph_dev(
    server: dict[str, Any],
) -> None:
    from langgraph_sdk.schema import Command

    spec = yaml.safe_load(EXAMPLE_SPEC.read_text())
    spec["data"] = [{"path": str(EXAMPLE_SPEC.parent / "docs" / "*.md")}]
    spec["llm"] = {"provider": "fake"}
    spec["run"] = {**spec["run"], "review": ["questions"], "max_iterations": 1}
    client = langgraph_sdk.get_client(url=server["url"])
    thread = (await client.threads.create())["thread_id"]

    # The server passes context={} (the run builds its own from the spec) and pauses.
    paused = await client.runs.wait(thread, "personagen", input={"spec": spec})
    assert paused["status"] == "running", paused
    state = await client.threads.get_state(thread)
    (interrupt,) = [i for task in state["tasks"] for i in task["interrupts"]]
    request = interrupt["value"]
    assert request["hook"] == "questions" and request["run_id"] == thread
    questions = {item["id"]: item["question"] for item in request["items"]}
    assert "Can I buy with a 5% deposit?" in questions.values()
    edited_id = next(i for i, q in questions.items() if q != "Can I buy with a 5% deposit?")
    edited = 'How much is a "survey", and who pays \\ for it?'

    decision = {"items": {edited_id: {"action": "edit", "text": edited}}}
    out = await client.runs.wait(thread, "personagen", command=Command(resume=decision))
    assert out["status"] == "done", out
    bundle = Path(out["bundle_dir"])
    assert bundle == server["out"] / thread
    rows = [json.loads(x) for x in (bundle / "qa.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (bundle / "rejected.jsonl").read_text().splitlines()]
    asked = {r["question"] for r in [*rows, *rejected]}
    assert edited in asked and questions[edited_id] not in asked
    assert rows, "no accepted pair"
    # Checkpoints went to PersonaGen's SQLite file, through serializer(): no warning.
    assert (server["state"] / "checkpoints.sqlite").is_file()
    log = server["log"].read_text(errors="replace")
    assert "unregistered type" not in log and "Traceback" not in log
    audit = server["audit"].read_text().splitlines()
    assert audit and audit[0].startswith("audit on in "), audit
    assert [line for line in audit if not line.startswith("audit on")] == []
