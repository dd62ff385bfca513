"""The Q/A graph on the real embedded model, offline (sockets blocked), end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_socket import disable_socket, enable_socket

import personagen

from ..conftest import EXAMPLE_SPEC

pytestmark = [pytest.mark.integration, pytest.mark.slow]

llama_cpp = pytest.importorskip("llama_cpp", reason="the embedded model needs the 'local' extra")


def test_example_runs_offline_on_the_embedded_model(tmp_path: Path) -> None:
    spec = personagen.load_spec(EXAMPLE_SPEC).model_copy(deep=True)
    assert spec.llm.provider == "embedded"
    spec.goal.params["num_questions"] = 2
    spec.goal.params["top_k"] = 2
    spec.run.max_iterations = 1
    disable_socket(allow_unix_socket=True)  # nothing may reach the network
    try:
        result = personagen.run(spec, out_dir=tmp_path / "out", state_dir=tmp_path / "state")
    finally:
        enable_socket()

    assert result.status == "done"
    bundle = result.bundle_dir
    assert bundle is not None
    metadata = json.loads((bundle / "metadata.json").read_text())
    from personagen.llm.embedded import default_model_name

    assert metadata["model"] == default_model_name()
    totals = metadata["usage"]["totals"]
    assert totals["llm_calls"] > 0 and totals["input_tokens"] > 0 and totals["output_tokens"] > 0
    kept = (bundle / "qa.jsonl").read_text().splitlines()
    rejected = (bundle / "rejected.jsonl").read_text().splitlines()
    unverified_file = bundle / "unverified.jsonl"
    unverified = unverified_file.read_text().splitlines() if unverified_file.exists() else []
    # Every question ends up somewhere, with its reasons when rejected: nothing dropped.
    assert len(kept) + len(rejected) + len(unverified) == len(result.pairs) >= 2
    # The embedded judge was measured on the run's own data, with scores in [0, 1].
    selftest = metadata["judge_selftest"]
    assert set(selftest["metrics"]) == {"grounding", "relevance"}
    for verdict in selftest["metrics"].values():
        assert verdict["auc"] is not None
        assert all(s is None or 0.0 <= s <= 1.0 for s in verdict["good"] + verdict["bad"])
    for line in [*kept, *rejected, *unverified]:
        assert all(0.0 <= v <= 1.0 for v in json.loads(line)["scores"].values())
    for line in rejected:
        assert json.loads(line)["reasons"]
    custom = [p for p in result.pairs.values() if p.origin == "custom"]
    assert [p.question for p in custom] == ["Can I buy with a 5% deposit?"]
    # Small models answer extractively: every accepted answer is made of source sentences.
    for pair in result.accepted:
        assert pair.spans
        for span in pair.spans:
            assert " ".join(span.text.split()) in " ".join(pair.answer.split())
