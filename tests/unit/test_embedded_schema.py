"""bound_schema: every string/array bounded, refs inlined, converter-hostile keys dropped."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from personagen.llm._schema import bound_schema


class Quote(BaseModel):
    text: str = Field(description="A sentence copied from the context.")
    source: int = Field(ge=1, le=3)


class Answer(BaseModel):
    """An answer with its evidence."""

    answer: str = Field(max_length=120, description="Short answer.")
    answerable: bool
    quotes: list[Quote] = Field(default_factory=list)
    best: Quote | None = None
    note: str | None = None
    tags: list[str] = Field(default_factory=list, max_length=2)
    kind: Literal["fact", "opinion"] = "fact"
    pair: tuple[str, int] | None = None


class Batch(BaseModel):
    answers: list[Answer] = Field(min_length=1)
    scores: dict[str, float] = Field(default_factory=dict)


def walk(node: Any):
    """Yield every schema object in a bounded schema."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_nested_defs_are_inlined_and_everything_is_bounded() -> None:
    raw = Batch.model_json_schema()
    assert "$defs" in raw  # the test is about resolving them
    bounded = bound_schema(raw, max_string=50, max_items=4)
    text = json.dumps(bounded)
    assert "$ref" not in text and "$defs" not in text
    for node in walk(bounded):
        if node.get("type") == "string" and "pattern" not in node and "format" not in node:
            assert "maxLength" in node, node
        if node.get("type") == "array" and "prefixItems" not in node:
            assert "maxItems" in node, node


def test_defaults_and_existing_bounds() -> None:
    bounded = bound_schema(Batch.model_json_schema(), max_string=50, max_items=4)
    answers = bounded["properties"]["answers"]
    assert answers["minItems"] == 1 and answers["maxItems"] == 4
    answer = answers["items"]["properties"]
    assert answer["answer"] == {"type": "string", "maxLength": 120}  # Field(max_length) kept
    assert answer["tags"]["maxItems"] == 2  # list max_length kept
    assert answer["tags"]["items"] == {"type": "string", "maxLength": 50}
    quote = answer["quotes"]["items"]["properties"]
    assert quote["text"] == {"type": "string", "maxLength": 50}


def test_optional_becomes_bounded_union_with_null() -> None:
    answer = bound_schema(Answer.model_json_schema(), max_string=30)["properties"]
    assert answer["note"] == {"anyOf": [{"type": "string", "maxLength": 30}, {"type": "null"}]}
    best = answer["best"]["anyOf"]
    assert best[1] == {"type": "null"}
    assert best[0]["properties"]["text"]["maxLength"] == 30


def test_small_int_range_becomes_enum_and_literal_stays_enum() -> None:
    props = bound_schema(Answer.model_json_schema())["properties"]
    assert props["quotes"]["items"]["properties"]["source"] == {"enum": [1, 2, 3]}
    assert props["kind"] == {"enum": ["fact", "opinion"]}


def test_annotations_dropped_and_all_properties_required() -> None:
    bounded = bound_schema(Answer.model_json_schema())
    for node in walk(bounded):
        assert not {"title", "description", "default"} & node.keys(), node
    assert bounded["required"] == list(Answer.model_fields)


def test_require_all_false_keeps_original_required() -> None:
    bounded = bound_schema(Answer.model_json_schema(), require_all=False)
    assert bounded["required"] == ["answer", "answerable"]


def test_tuple_and_dict_values() -> None:
    props = bound_schema(Batch.model_json_schema(), max_string=10)["properties"]
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "number"}}
    pair = props["answers"]["items"]["properties"]["pair"]["anyOf"][0]
    assert pair["prefixItems"] == [{"type": "string", "maxLength": 10}, {"type": "integer"}]


def test_type_list_and_min_length_above_default() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": ["string", "null"], "minLength": 500},
            "b": {"type": "array", "items": {"type": "string"}, "minItems": 12},
        },
    }
    props = bound_schema(schema, max_string=400, max_items=8)["properties"]
    assert props["a"] == {
        "anyOf": [{"type": "string", "minLength": 500, "maxLength": 500}, {"type": "null"}]
    }
    assert props["b"]["minItems"] == 12 and props["b"]["maxItems"] == 12


def test_patterns_and_formats() -> None:
    class Codes(BaseModel):
        country: str = Field(pattern=r"^[A-Z]{2}$")
        loose: str = Field(pattern=r"\d+")
        day: str = Field(json_schema_extra={"format": "date"})
        site: str = Field(json_schema_extra={"format": "uri"})

    props = bound_schema(Codes.model_json_schema(), max_string=64)["properties"]
    assert props["country"] == {"type": "string", "pattern": "^[A-Z]{2}$"}
    assert props["loose"] == {"type": "string", "maxLength": 64}  # unanchored: dropped
    assert props["day"] == {"type": "string", "format": "date"}
    assert props["site"] == {"type": "string", "maxLength": 64}


def test_all_of_and_sibling_ref_are_merged() -> None:
    schema = {
        "$defs": {
            "Base": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "Named": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
        "type": "object",
        "properties": {
            "both": {"allOf": [{"$ref": "#/$defs/Base"}, {"$ref": "#/$defs/Named"}]},
            "one": {"$ref": "#/$defs/Named", "description": "sibling of a $ref"},
        },
    }
    props = bound_schema(schema, max_string=20)["properties"]
    assert props["both"]["properties"] == {
        "id": {"type": "integer"},
        "name": {"type": "string", "maxLength": 20},
    }
    assert props["both"]["required"] == ["id", "name"]
    assert props["one"]["properties"]["name"]["maxLength"] == 20


def test_extra_allow_does_not_open_the_object() -> None:
    class Open(BaseModel):
        model_config = ConfigDict(extra="allow")
        x: str

    bounded = bound_schema(Open.model_json_schema())
    assert "additionalProperties" not in bounded


def test_input_is_not_mutated() -> None:
    raw = Batch.model_json_schema()
    before = json.dumps(raw, sort_keys=True)
    bound_schema(raw)
    assert json.dumps(raw, sort_keys=True) == before


def test_recursive_schema_is_refused() -> None:
    class Node(BaseModel):
        label: str
        children: list[Node] = Field(default_factory=list)

    with pytest.raises(ValueError, match="recursive"):
        bound_schema(Node.model_json_schema())


@pytest.mark.parametrize(
    ("schema", "kwargs", "match"),
    [
        ({"$ref": "#/$defs/Missing"}, {}, "cannot resolve"),
        ({"$ref": "https://example.com/s.json"}, {}, "only local"),
        ({"type": "string"}, {"max_string": 0}, "at least 1"),
        ({"type": "object", "properties": {"pick": {"enum": []}}}, {}, "empty 'enum'"),
    ],
)
def test_bad_input(schema: dict[str, Any], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bound_schema(schema, **kwargs)


def test_llama_cpp_converter_accepts_the_result() -> None:
    pytest.importorskip("llama_cpp")
    from personagen.llm._grammar import check_grammar, schema_to_gbnf

    for model in (Answer, Batch, Quote):
        gbnf = schema_to_gbnf(json.dumps(bound_schema(model.model_json_schema())))
        assert "root ::=" in gbnf
        check_grammar(gbnf)  # llama.cpp's own parser accepts it


# render_prompt needs no model either: how messages become llama.cpp prompts.


def test_render_prompt_formats() -> None:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    from personagen.llm.embedded import render_prompt

    messages = [SystemMessage("Be brief."), HumanMessage("Hi?")]
    chatml, stops = render_prompt(messages, "chatml")
    assert chatml == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "<|im_end|>" in stops

    gemma, stops = render_prompt(messages, "gemma")  # no system role: merged into the user turn
    assert gemma == "<start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\n"
    assert "<end_of_turn>" in stops

    completion, stops = render_prompt([*messages, AIMessage('{"a":')], "completion")
    assert completion == 'Be brief.\n\nHi?\n\n{"a":' and stops == []

    prefilled, _ = render_prompt([HumanMessage("Hi?"), AIMessage("Sure")], "chatml")
    assert prefilled.endswith("<|im_start|>assistant\nSure")


@pytest.mark.parametrize(("messages", "fmt"), [([], "chatml"), (["x"], "nope")])
def test_render_prompt_rejects(messages: list[str], fmt: str) -> None:
    from langchain_core.messages import HumanMessage

    from personagen.llm.embedded import render_prompt

    with pytest.raises(ValueError):
        render_prompt([HumanMessage(m) for m in messages], fmt)


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"type": "integer", "minimum": 1, "maximum": 3}, {"enum": [1, 2, 3]}),
        ({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}, {"enum": [1, 2]}),
        ({"type": "integer", "exclusiveMinimum": 0.5, "maximum": 2.5}, {"enum": [1, 2]}),
        ({"type": "integer", "minimum": 0, "maximum": 1000}, {"type": "integer"}),
        ({"type": "integer", "minimum": 0}, {"type": "integer"}),
        ({"type": "number", "minimum": 0, "maximum": 1}, {"type": "number"}),
    ],
)
def test_numbers(node: dict[str, Any], expected: dict[str, Any]) -> None:
    assert bound_schema(node) == expected
