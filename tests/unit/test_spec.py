from __future__ import annotations

import json
from pathlib import Path

import pytest

from personagen.errors import SpecError
from personagen.specfile import load_spec, parse_spec
from personagen.state.spec import RunSpec

from ..conftest import EXAMPLE_SPEC

GOOD = {"persona": {"description": "A nurse buying a home"}, "data": [{"text": "Some text."}]}


def test_example_spec_loads_and_resolves_paths() -> None:
    spec = load_spec(EXAMPLE_SPEC)
    assert spec.persona.name == "Maya"
    assert spec.base_dir == str(EXAMPLE_SPEC.parent.resolve())
    assert spec.persona.custom_questions == ["Can I buy with a 5% deposit?"]


def test_shorthands_expand() -> None:
    spec = parse_spec(
        {"persona": "A nurse", "goal": "qa", "data": ["docs/*.md", "https://x.org/a"]}
    )
    assert spec.persona.description == "A nurse" and spec.persona.is_bare
    assert spec.goal.name == "qa"
    assert spec.data[0].path == "docs/*.md" and spec.data[1].url == "https://x.org/a"


def test_defaults_are_offline() -> None:
    spec = RunSpec.model_validate(GOOD)
    assert spec.llm.provider == "embedded"
    assert spec.run.max_iterations == 3


def _bad(**changes: object) -> dict[str, object]:
    spec: dict[str, object] = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        target = spec
        keys = path.split("__")
        for key in keys[:-1]:
            target = target.setdefault(key, {})  # type: ignore[assignment]
        target[keys[-1]] = value  # type: ignore[index]
    return spec


BAD_SPECS = [
    (_bad(extra_key=1), "extra_key: unknown key"),
    (_bad(persona__favourite_color="red"), "persona.favourite_color: unknown key"),
    ({"data": [{"text": "x"}]}, "persona: required key is missing"),
    ({"persona": "A nurse"}, "data: required key is missing"),
    (_bad(data=[]), "data: List should have at least 1 item"),
    (_bad(data=[{"path": "a", "url": "https://b"}]), "exactly one of 'path', 'url' or 'text'"),
    (_bad(data=[{}]), "exactly one of 'path', 'url' or 'text'"),
    (_bad(data=[{"url": "ftp://x.org/a"}]), "must start with http:// or https://"),
    (_bad(data=[{"text": "   "}]), "inline 'text' is empty"),
    (_bad(persona__language="english"), "persona.language: 'english' is not an ISO 639-1"),
    (_bad(persona__expertise="guru"), "persona.expertise"),
    (_bad(persona__custom_questions=["ok?", " "]), "persona.custom_questions: item 1 is empty"),
    (_bad(goal={"name": "qa", "baseline": {"faithfulness": 1.5}}), "between 0 and 1"),
    (_bad(constraints={"filter_out": [{"regex": "(unclosed"}]}), "invalid regular expression"),
    (_bad(constraints={"filter_out": [{"regex": "a", "pii": True}]}), "exactly one of regex"),
    (_bad(constraints={"check_for": [{"max_words": 0}]}), "constraints.check_for.0.max_words"),
    (_bad(constraints={"check_for": [{"pii": ["passport"]}]}), "constraints.check_for.0.pii"),
    (_bad(run={"max_iterations": 0}), "run.max_iterations"),
    (_bad(run={"review": ["everything"]}), "run.review.0"),
    (_bad(llm={"provider": "anthropic"}), "llm.provider"),
    (_bad(llm={"api_key": "sk-123"}), "'api_key' must not be written in the spec"),
    (_bad(llm={"base_url": "localhost:8000"}), "base_url 'localhost:8000' must start with"),
    (_bad(llm={"temperature": 3}), "llm.temperature"),
]


@pytest.mark.parametrize(("data", "message"), BAD_SPECS)
def test_bad_specs_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(data, origin="spec.yaml")
    text = str(info.value)
    assert message in text
    assert text.startswith("spec.yaml: ")


def test_secret_never_reaches_the_model_dump() -> None:
    spec = parse_spec({**GOOD, "llm": {"provider": "openai", "api_key_env": "MY_KEY"}})
    assert "sk-" not in spec.model_dump_json()
    assert spec.llm.api_key_env == "MY_KEY"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("persona: [unclosed", ".yaml", "invalid YAML at line 1"),
        ('{"persona": ', ".json", "invalid JSON at line 1"),
        ("", ".yaml", "the file is empty"),
        ("- a\n- b\n", ".yaml", "expected a mapping"),
    ],
)
def test_bad_files(tmp_path: Path, content: str, suffix: str, message: str) -> None:
    path = tmp_path / f"spec{suffix}"
    path.write_text(content)
    with pytest.raises(SpecError, match=message) as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec("/nonexistent/spec.yaml")
