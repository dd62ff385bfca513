"""The example through `provider: openai` against a real llama.cpp server (llama_cpp.server).

The server serves the bundled SmolLM2 GGUF on 127.0.0.1. It refuses `json_schema` (HTTP 500),
so the client must move to `json_object` with the (bounded) schema, which the server compiles
into a grammar: the same grammar-constrained decoding the embedded provider does in process.
The run must then accept as many pairs as the embedded provider on the same spec, give or
take one, and at least one (one pass, 3 questions + 1 custom, 2026-12-05: embedded 1,
server 2; both judge with the goal's small-judge checks, the model being sub-1B).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import personagen
from personagen.llm._modes import MODES_FILE

from ..conftest import EXAMPLE_SPEC

pytest.importorskip("llama_cpp.server.app", reason="needs the test extra: llama-cpp-python[server]")

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def llamacpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` on the bundled GGUF; yields its /v1 base URL."""
    from personagen.llm.embedded import default_model_path

    port = _free_port()
    log = tmp_path_factory.mktemp("llamacpp") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        default_model_path(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",  # the embedded provider's context
    ]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "NO_PROXY": "*"}
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server not up after 120 s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _example() -> personagen.RunSpec:
    spec = personagen.load_spec(EXAMPLE_SPEC).model_copy(deep=True)
    spec.run.max_iterations = 1  # the same for both providers; halves the time
    return spec


def test_the_example_on_a_llamacpp_server_matches_the_embedded_provider(
    llamacpp_server: str, tmp_path: Path
) -> None:
    from personagen.llm.embedded import default_model_name

    embedded = personagen.run(
        _example(), out_dir=tmp_path / "out-embedded", state_dir=tmp_path / "state-embedded"
    )
    spec = _example()
    spec.llm = spec.llm.model_copy(
        update={"provider": "openai", "base_url": llamacpp_server, "model": default_model_name()}
    )
    state = tmp_path / "state-server"
    served = personagen.run(spec, out_dir=tmp_path / "out-server", state_dir=state)

    assert embedded.status == served.status == "done"
    print(f"accepted: embedded {len(embedded.accepted)}, server {len(served.accepted)}")
    # Same model, same grammar-constrained decoding, same judges (a sub-1B judge by name):
    # as many accepted pairs, give or take one, and not the vacuous 0 against 0.
    assert len(embedded.accepted) >= 1
    assert abs(len(served.accepted) - len(embedded.accepted)) <= 1
    # Questions were written and answered (not 0 questions after repairs, as with prompting).
    assert len(served.pairs) >= 2
    assert any(pair.answer for pair in served.pairs.values())
    # The server refused json_schema once; json_object with the schema was found and kept.
    modes = json.loads((state / MODES_FILE).read_text())["endpoints"]
    (entry,) = modes.values()
    assert entry["mode"] == "json_mode" and "json_schema" in entry["reason"]
    metadata = json.loads((tmp_path / "out-server" / served.run_id / "metadata.json").read_text())
    totals = metadata["usage"]["totals"]
    assert totals["repairs"] <= 2  # grammar-constrained: output parses
    assert totals["cost_usd"] == 0 and totals["cost"].startswith("local")
