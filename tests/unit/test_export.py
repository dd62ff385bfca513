"""Exports, loaded back by the libraries they are for: Ragas, HF datasets, pandas, pyarrow.

The bundle is a real run of the home-buying example with the fake provider; a copy of it gets
an unanswerable custom question and an `unverified.jsonl` with ugly text, to check that those
never land among accepted rows and survive every format.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

import personagen
from personagen.store.export import ExportError, export

from ..conftest import EXAMPLE_SPEC

UGLY = 'He said "5%"\\n, then \\\\server\\share; 日本語の質問? `x = {"a": [1, 2]}` 🏠\nnext line'


def _example_spec(**run: Any) -> Any:
    spec = personagen.load_spec(EXAMPLE_SPEC)
    return spec.model_copy(
        update={
            "llm": spec.llm.model_copy(update={"provider": "fake"}),
            "run": spec.run.model_copy(update=run),
        }
    )


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """out/ with the example's bundle (run id `ex`), run with the fake provider."""
    root = tmp_path_factory.mktemp("export")
    result = personagen.run(
        _example_spec(), run_id="ex", out_dir=root / "out", state_dir=root / "state"
    )
    assert result.status == "done" and result.accepted
    return root / "out"


@pytest.fixture
def ugly_run(example_run: Path, tmp_path: Path) -> Path:
    """A copy of the example bundle with an unanswerable row and an unverified.jsonl."""
    out = tmp_path / "out"
    shutil.copytree(example_run / "ex", out / "ugly")
    qa = out / "ugly" / "qa.jsonl"
    rows = [json.loads(x) for x in qa.read_text(encoding="utf-8").splitlines()]
    unanswerable = {
        **rows[0],
        "id": "qunanswer01",
        "question": "Can I buy with a 5% deposit? " + UGLY,
        "answer": "",
        "answerable": False,
        "origin": "custom",
        "status": "unanswerable",
        "spans": [],
    }
    unverified = {**rows[0], "id": "qunverify01", "status": "unverified", "answer": UGLY}
    unverified["question"] = "Ugly: " + UGLY
    qa.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [*rows, unanswerable]),
        encoding="utf-8",
    )
    (out / "ugly" / "unverified.jsonl").write_text(
        json.dumps(unverified, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    metadata = json.loads((out / "ugly" / "metadata.json").read_text())
    (out / "ugly" / "metadata.json").write_text(json.dumps({**metadata, "run_id": "ugly"}))
    return out


def _bundle_rows(bundle: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (bundle / "qa.jsonl").read_text().splitlines()]


def test_finetune_lines_in_the_bundle_hold_messages_only(example_run: Path) -> None:
    lines = (example_run / "ex" / "qa_finetune.jsonl").read_text().splitlines()
    assert lines and all(list(json.loads(x)) == ["messages"] for x in lines)


def test_ragas_export_loads_with_every_field_filled(example_run: Path, tmp_path: Path) -> None:
    from ragas import EvaluationDataset
    from ragas.dataset_schema import SingleTurnSample

    result = personagen.export("ex", "ragas", out=tmp_path / "r", runs_dir=example_run)
    accepted = [r for r in _bundle_rows(example_run / "ex") if r["status"] == "accepted"]
    dataset = EvaluationDataset.from_jsonl(result.files["accepted"])
    assert len(dataset) == len(accepted) == result.counts["accepted"] > 0
    for sample, row in zip(dataset.samples, accepted, strict=True):
        assert isinstance(sample, SingleTurnSample)
        assert sample.user_input == row["question"] and sample.reference == row["answer"]
        assert sample.reference_contexts == [s["text"] for s in row["spans"]]
        assert sample.retrieved_contexts == [c["text"] for c in row["contexts"]]
        assert all(sample.reference_contexts) and all(sample.retrieved_contexts)
        assert sample.persona_name == "Maya"
    raw = [json.loads(x) for x in result.files["accepted"].read_text().splitlines()]
    assert {r["run_id"] for r in raw} == {"ex"}
    assert [r["pair_id"] for r in raw] == [r["id"] for r in accepted]
    manifest = json.loads((tmp_path / "r" / "export.json").read_text())
    assert manifest["counts"]["accepted"] == len(accepted) and manifest["runs"] == ["ex"]


def test_unanswerable_and_unverified_go_to_their_own_files(ugly_run: Path, tmp_path: Path) -> None:
    from ragas import EvaluationDataset

    result = export("ugly", "ragas", out=tmp_path / "r", runs_dir=ugly_run)
    assert result.counts["unanswerable"] == 1 and result.counts["unverified"] == 1
    accepted = EvaluationDataset.from_jsonl(result.files["accepted"])
    assert all(s.reference for s in accepted.samples)
    assert not [s for s in accepted.samples if UGLY in (s.user_input or "")]
    unanswerable = EvaluationDataset.from_jsonl(result.files["unanswerable"])
    assert unanswerable.samples[0].user_input == "Can I buy with a 5% deposit? " + UGLY
    assert unanswerable.samples[0].reference == ""
    unverified = EvaluationDataset.from_jsonl(result.files["unverified"])
    assert unverified.samples[0].reference == UGLY  # quotes, backslashes, CJK, emoji, newline


def test_hf_export_loads_with_datasets(ugly_run: Path, tmp_path: Path) -> None:
    from datasets import load_from_disk
    from ragas import EvaluationDataset

    result = export("ugly", "hf", out=tmp_path / "hf", runs_dir=ugly_run)
    accepted = load_from_disk(str(result.files["accepted"]))
    assert accepted.num_rows == result.counts["accepted"] > 0
    assert {"user_input", "reference", "reference_contexts", "retrieved_contexts"} <= set(
        accepted.column_names
    )
    assert {"persona_name", "run_id", "pair_id", "score_faithfulness"} <= set(accepted.column_names)
    assert all(r["reference_contexts"] and r["retrieved_contexts"] for r in accepted)
    assert EvaluationDataset.from_hf_dataset(accepted).samples[0].persona_name == "Maya"
    unverified = load_from_disk(str(result.files["unverified"]))
    assert unverified[0]["reference"] == UGLY
    # Every set has the same columns (an empty set too).
    for name in ("unanswerable", "unverified"):
        assert load_from_disk(str(result.files[name])).features == accepted.features


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_round_trip(ugly_run: Path, tmp_path: Path, fmt: str) -> None:
    import pandas as pd
    import pyarrow.parquet as pq

    reference = export("ugly", "ragas", out=tmp_path / "r", runs_dir=ugly_run)
    result = export("ugly", fmt, out=tmp_path / fmt, runs_dir=ugly_run)  # type: ignore[arg-type]
    for name in ("accepted", "unanswerable", "unverified"):
        expected = [json.loads(x) for x in reference.files[name].read_text().splitlines()]
        if fmt == "csv":
            frame = pd.read_csv(result.files[name], keep_default_na=False)
            rows = frame.to_dict(orient="records")
            for row in rows:
                for key in ("reference_contexts", "retrieved_contexts", "sources"):
                    row[key] = json.loads(row[key])
        else:
            rows = pq.read_table(result.files[name]).to_pylist()
        assert len(rows) == len(expected) == result.counts[name]
        for row, want in zip(rows, expected, strict=True):
            for key in ("user_input", "reference", "reference_contexts", "retrieved_contexts"):
                assert row[key] == want[key], (name, key)
            assert row["persona_name"] == "Maya" and row["run_id"] == "ugly"
            assert row["score_faithfulness"] == pytest.approx(want["score_faithfulness"])


def _strict_chat_line(line: str) -> list[dict[str, str]]:
    """OpenAI's chat fine-tuning format, checked strictly."""
    value = json.loads(line)
    assert isinstance(value, dict) and list(value) == ["messages"], value
    messages = value["messages"]
    assert isinstance(messages, list) and len(messages) in (2, 3)
    for message in messages:
        assert set(message) == {"role", "content"}
        assert isinstance(message["content"], str) and message["content"].strip()
    roles = [m["role"] for m in messages]
    assert roles in (["system", "user", "assistant"], ["user", "assistant"])
    return messages


def test_chat_export_is_strict_openai_fine_tuning(ugly_run: Path, tmp_path: Path) -> None:
    result = export("ugly", "chat", out=tmp_path / "chat", runs_dir=ugly_run)
    lines = result.files["accepted"].read_text(encoding="utf-8").splitlines()
    assert len(lines) == result.counts["accepted"] > 0
    rows = {r["question"]: r for r in _bundle_rows(ugly_run / "ugly")}
    for line in lines:
        system, user, assistant = _strict_chat_line(line)
        pair = rows[user["content"]]
        assert assistant["content"] == pair["answer"]
        assert all(c["text"] in system["content"] for c in pair["contexts"])
    (unverified,) = result.files["unverified"].read_text(encoding="utf-8").splitlines()
    assert _strict_chat_line(unverified)[-1]["content"] == UGLY
    # The unanswerable question has no answer to train on: kept as a plain row.
    (question,) = result.files["unanswerable"].read_text(encoding="utf-8").splitlines()
    assert "messages" not in json.loads(question)

    bare = export(
        "ugly",
        "chat",
        out=tmp_path / "bare",
        runs_dir=ugly_run,
        system_prompt="",
        with_contexts=False,
    )
    for line in bare.files["accepted"].read_text().splitlines():
        assert [m["role"] for m in _strict_chat_line(line)] == ["user", "assistant"]


def test_deepeval_goldens(ugly_run: Path, tmp_path: Path) -> None:
    result = export("ugly", "deepeval", out=tmp_path / "d", runs_dir=ugly_run)
    goldens = json.loads(result.files["accepted"].read_text(encoding="utf-8"))
    assert len(goldens) == result.counts["accepted"] > 0
    for golden in goldens:
        assert golden["input"] and golden["expected_output"]
        assert golden["context"] and all(isinstance(c, str) and c for c in golden["context"])
        assert golden["retrieval_context"]
        assert golden["additional_metadata"]["persona_name"] == "Maya"
        assert golden["additional_metadata"]["run_id"] == "ugly"
    (unanswerable,) = json.loads(result.files["unanswerable"].read_text(encoding="utf-8"))
    assert unanswerable["expected_output"] is None  # nothing to match, not an empty answer
    deepeval = pytest.importorskip("deepeval.dataset")
    dataset = deepeval.EvaluationDataset()
    dataset.add_goldens_from_json_file(str(result.files["accepted"]))
    assert [g.input for g in dataset.goldens] == [g["input"] for g in goldens]


def test_batch_export_merges_its_runs(tmp_path: Path) -> None:
    from ragas import EvaluationDataset

    from personagen.batch import parse_batch, run_batch

    example = yaml.safe_load(EXAMPLE_SPEC.read_text())
    batch = {
        "batch_id": "homes",
        "personas": [
            example["persona"],
            {"name": "Tom", "description": "Mortgage broker.", "expertise": "expert"},
        ],
        "data": [{"path": str(EXAMPLE_SPEC.parent / "docs" / "*.md")}],
        "goal": example["goal"],
        "llm": {"provider": "fake"},
        "run": {"max_iterations": 1},
    }
    report = run_batch(parse_batch(batch), out_dir=tmp_path / "out", state_dir=tmp_path / "state")
    assert report.status == "done"
    result = export("homes", "ragas", runs_dir=tmp_path / "out")
    assert result.out == (tmp_path / "out" / "homes" / "export" / "ragas").resolve()
    assert result.batch_id == "homes" and len(result.runs) == 2
    rows = [json.loads(x) for x in result.files["accepted"].read_text().splitlines()]
    per_run = {
        run["id"]: len(
            [r for r in _bundle_rows(Path(run["bundle_dir"])) if r["status"] == "accepted"]
        )
        for run in report.runs
    }
    assert {r["run_id"] for r in rows} == set(per_run) and len(rows) == sum(per_run.values())
    assert {r["persona_name"] for r in rows} == {"Maya", "Tom"}
    assert {r["batch_id"] for r in rows} == {"homes"}
    assert len(EvaluationDataset.from_jsonl(result.files["accepted"])) == len(rows)
    # A run of the batch alone, by its id.
    one = export(result.runs[0], "ragas", out=tmp_path / "one", runs_dir=tmp_path / "out")
    assert one.runs == [result.runs[0]] and one.batch_id is None


@pytest.mark.parametrize(
    ("ref", "fmt", "message"),
    [
        ("nope", "ragas", "no run or batch 'nope'"),
        ("ex", "xml", "unknown export format 'xml'"),
    ],
)
def test_bad_input_names_the_culprit(example_run: Path, ref: str, fmt: str, message: str) -> None:
    with pytest.raises(ExportError, match=message):
        export(ref, fmt, runs_dir=example_run)  # type: ignore[arg-type]


def test_cli_export(example_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from personagen.cli import app

    runner = CliRunner()
    out = tmp_path / "csv"
    done = runner.invoke(
        app, ["export", "ex", "--format", "csv", "--from", str(example_run), "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert "accepted" in done.output and (out / "accepted.csv").is_file()
    missing = runner.invoke(app, ["export", "nope", "--from", str(example_run)])
    assert missing.exit_code != 0 and "no run or batch 'nope'" in str(missing.exception)
