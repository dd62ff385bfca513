"""Bad command lines and bad specs: one line on stderr, the culprit and its value named, exit 2.

Issue 16 (4). Driven in-process through `personagen.cli.main` (the real entry point: Typer
parsing, the spec loader, goal resolution, `check_runnable`), so 40+ cases stay fast.
No case reaches a model call: every one fails before the run has an id.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from personagen import cli

from ..conftest import CORPUS

GOOD: dict[str, Any] = {
    "persona": {"name": "Maya", "description": "First-time home buyer, nurse."},
    "goal": {"name": "qa", "params": {"num_questions": 2}},
    "data": [{"text": CORPUS["deposits.md"], "name": "deposits"}],
    "llm": {"provider": "fake"},
}


def _spec(**changes: Any) -> dict[str, Any]:
    spec = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        target = spec
        for key in path:
            target = target.setdefault(key, {})
        target[last] = value
    return spec


# (case id, command line with {spec} for the spec file, spec or None, strings the line names)
CLI_CASES: list[tuple[str, list[str], dict[str, Any] | None, list[str]]] = [
    ("max-tokens word", ["run", "{spec}", "--max-tokens", "lots"], GOOD, ["--max-tokens", "lots"]),
    ("max-tokens negative", ["run", "{spec}", "--max-tokens", "-5"], GOOD, ["--max-tokens", "-5"]),
    ("max-tokens zero", ["run", "{spec}", "--max-tokens=0"], GOOD, ["--max-tokens", "'0'"]),
    ("resume max-tokens", ["resume", "r1", "--max-tokens", "x1"], None, ["--max-tokens", "x1"]),
    ("provider bogus", ["run", "{spec}", "--provider", "bogus"], GOOD, ["--provider", "bogus"]),
    ("base-url ftp", ["run", "{spec}", "--base-url", "ftp://h/v1"], GOOD, ["--base-url", "ftp://"]),
    (
        "structured-output",
        ["run", "{spec}", "--structured-output", "xml"],
        GOOD,
        ["--structured-output", "xml"],
    ),
    ("run-id path", ["run", "{spec}", "--run-id", "../evil"], GOOD, ["--run-id", "../evil"]),
    ("run-id spaces", ["run", "{spec}", "--run-id", "a b"], GOOD, ["--run-id", "a b"]),
    ("unknown option", ["run", "{spec}", "--bogus"], GOOD, ["unknown option", "--bogus"]),
    ("unknown option typo", ["run", "{spec}", "--max-token", "5"], GOOD, ["--max-token"]),
    ("option without value", ["run", "{spec}", "--out"], GOOD, ["--out"]),
    ("missing spec argument", ["run"], None, ["personagen run", "SPEC"]),
    ("missing run id", ["resume"], None, ["personagen resume", "RUN_ID"]),
    ("unknown command", ["rnu", "x"], None, ["rnu"]),
    ("runs list limit", ["runs", "list", "--limit", "0"], None, ["--limit", "'0'"]),
    ("runs list limit word", ["runs", "list", "--limit", "many"], None, ["--limit", "many"]),
    ("runs db scheme", ["runs", "list", "--db", "mysql://h/db"], None, ["mysql"]),
    ("spec missing", ["run", "/nonexistent/spec.yaml"], None, ["/nonexistent/spec.yaml"]),
    ("validate missing", ["validate", "/nope/x.json"], None, ["/nope/x.json"]),
    ("goals show unknown", ["goals", "show", "qaa"], None, ["goal.name", "qaa"]),
    ("resume unknown run", ["resume", "ghost-run"], None, ["ghost-run"]),
]

# (case id, spec, strings the line names); run through `validate`
SPEC_CASES: list[tuple[str, Any, list[str]]] = [
    (
        "review value",
        _spec(run={"review": ["questions", "approvals"]}),
        ["run.review.1", "approvals"],
    ),
    ("provider value", _spec(llm={"provider": "gpt"}), ["llm.provider", "'gpt'"]),
    ("iterations zero", _spec(run={"max_iterations": 0}), ["run.max_iterations", "0"]),
    ("concurrency word", _spec(run={"max_concurrency": "lots"}), ["run.max_concurrency", "lots"]),
    ("max_tokens negative", _spec(run={"max_tokens": -1}), ["run.max_tokens", "-1"]),
    ("expertise", _spec(persona__expertise="guru"), ["persona.expertise", "guru"]),
    ("language", _spec(persona__language="english"), ["persona.language", "english"]),
    ("unknown top key", {**GOOD, "personas": []}, ["personas", "unknown key"]),
    ("unknown persona key", _spec(persona__nurse=True), ["persona.nurse", "unknown key"]),
    ("missing description", {**GOOD, "persona": {"name": "x"}}, ["persona.description"]),
    ("no data", {**GOOD, "data": []}, ["data"]),
    ("data two kinds", {**GOOD, "data": [{"path": "a", "text": "b"}]}, ["data.0", "path, text"]),
    ("url scheme", {**GOOD, "data": [{"url": "ftp://x/y"}]}, ["data.0", "ftp://x/y"]),
    ("data path missing", {**GOOD, "data": [{"path": "/no/such/*.md"}]}, ["/no/such/*.md"]),
    ("timeout", {**GOOD, "data": [{"text": "x y z", "timeout": 0}]}, ["data.0.timeout", "(got 0)"]),
    ("bad regex", _spec(constraints={"filter_out": [{"regex": "(unclosed"}]}), ["(unclosed"]),
    (
        "rule kinds",
        _spec(constraints={"check_for": [{"max_words": 5, "min_words": 1}]}),
        ["check_for.0"],
    ),
    ("max_words", _spec(constraints={"check_for": [{"max_words": -3}]}), ["max_words", "-3"]),
    (
        "applies_to",
        _spec(constraints={"check_for": [{"max_words": 5, "applies_to": "all"}]}),
        ["applies_to", "all"],
    ),
    ("api key inline", _spec(llm={"provider": "fake", "api_key": "sk-123"}), ["llm", "api_key"]),
    ("temperature", _spec(llm={"provider": "fake", "temperature": 9}), ["llm.temperature", "9"]),
    (
        "baseline range",
        _spec(goal={"name": "qa", "baseline": {"faithfulness": 1.5}}),
        ["faithfulness", "1.5"],
    ),
    (
        "baseline metric",
        _spec(goal={"name": "qa", "baseline": {"vibes": 0.5}}),
        ["goal.baseline", "vibes"],
    ),
    ("unknown goal", _spec(goal={"name": "poem"}), ["goal.name", "poem"]),
    (
        "unknown param",
        _spec(goal={"name": "qa", "params": {"num_qs": 3}}),
        ["goal.params", "num_qs"],
    ),
    (
        "negative questions",
        _spec(goal={"name": "qa", "params": {"num_questions": -3}}),
        ["goal.params.num_questions", "-3"],
    ),
    ("zero top_k", _spec(goal={"name": "qa", "params": {"top_k": 0}}), ["goal.params.top_k", "0"]),
    (
        "float questions",
        _spec(goal={"name": "qa", "params": {"num_questions": 2.5}}),
        ["num_questions", "2.5"],
    ),
    (
        "bool questions",
        _spec(goal={"name": "qa", "params": {"num_questions": True}}),
        ["num_questions", "True"],
    ),
    (
        "overlap >= size",
        _spec(goal={"name": "qa", "params": {"chunk_size": 100, "chunk_overlap": 100}}),
        ["chunk_overlap", "100"],
    ),
    (
        "dedup range",
        _spec(goal={"name": "qa", "params": {"dedup_threshold": 150}}),
        ["dedup_threshold", "150"],
    ),
    (
        "summary sections",
        _spec(goal={"name": "summary", "params": {"max_sections": 20}}),
        ["max_sections", "20"],
    ),
    (
        "hook module",
        _spec(hooks={"after_questions": "no_such_mod.hooks:drop"}),
        ["hooks.after_questions", "no_such_mod"],
    ),
    (
        "hook function",
        _spec(hooks={"after_questions": "tests.plugins_pkg:nope"}),
        ["hooks.after_questions", "nope"],
    ),
    (
        "hook point",
        _spec(hooks={"after_everything": "tests.plugins_pkg:drop_costs"}),
        ["hooks.after_everything"],
    ),
    (
        "constraint plugin",
        _spec(constraints={"filter_out": [{"plugin": "tests.plugins_pkg:absent"}]}),
        ["constraints.filter_out.0.plugin", "absent"],
    ),
    (
        "metric plugin",
        _spec(goal={"name": "qa", "metrics": ["tests.plugins_pkg:gone"]}),
        ["goal.metrics.0", "tests.plugins_pkg:gone"],
    ),
    (
        "model_path missing",
        _spec(llm={"provider": "embedded", "model_path": "/models/none.gguf"}),
        ["llm.model_path", "/models/none.gguf"],
    ),
    ("spec not a mapping", ["persona", "data"], ["mapping"]),
]


def _invoke(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["personagen", *argv])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return int(exited.value.code or 0), capsys.readouterr().err


def _check(code: int, err: str, names: list[str]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert "Traceback" not in err and "errors.pydantic.dev" not in err
    assert code == 2, (code, err)


@pytest.mark.parametrize(
    ("argv", "spec", "names"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES]
)
def test_bad_command_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    spec: dict[str, Any] | None,
    names: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.json"
    if spec is not None:
        path.write_text(json.dumps(spec))
    code, err = _invoke([a.replace("{spec}", str(path)) for a in argv], monkeypatch, capsys)
    _check(code, err, names)


@pytest.mark.parametrize(
    ("spec", "names"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_bad_spec(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec: Any,
    names: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    code, err = _invoke(["validate", str(path)], monkeypatch, capsys)
    _check(code, err, names)


def test_the_table_is_large_enough() -> None:
    assert len(CLI_CASES) + len(SPEC_CASES) >= 40


def test_a_spec_with_many_problems_is_still_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        'persona: {name: "", description: "x"}\n'
        "data: []\n"
        "run: {max_iterations: 0, review: [later]}\n"
        'llm: {provider: "gpt", temperature: "hot \\\\ \\"quoted\\"\\n"}\n'
    )
    code, err = _invoke(["validate", str(path)], monkeypatch, capsys)
    _check(code, err, ["persona.name", "run.max_iterations", "later", "llm.provider", "hot"])


def test_a_valid_spec_still_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spec.json"
    spec = _spec(hooks={"after_questions": "tests.plugins_pkg:drop_costs"})
    path.write_text(json.dumps(spec))
    monkeypatch.setattr(sys, "argv", ["personagen", "validate", str(path)])
    cli.main()
    assert "valid" in capsys.readouterr().out
