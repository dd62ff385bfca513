"""Sample with the real embedded model under grammars built from ugly text.

Run as a script by `test_grammar_property.py`, in a child process: if a grammar still
crashed llama.cpp, the child would die (SIGSEGV) and the test would report it, instead of
the crash taking the whole pytest session down. Prints one line per check; exits 1 with the
failure on stderr.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from typing import Literal, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, create_model

from personagen.llm.embedded import EmbeddedChatModel
from personagen.prompts.schemas import extractive_answer_schema

REPORTED = ['hasattr(sys, "real_prefix")', r"C:\new\table", r'"\\"']

# Short texts (every character may cost a few tokens) of any code point, surrogates included,
# with the characters that broke grammars well represented.
CHAR = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from(list('"\\{}[]|*<>:=\n\t\x00\x7f\u00e9\U0001f600')),
)
TEXT = st.text(CHAR, min_size=1, max_size=16)
FEW = settings(
    max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
ONE = settings(
    max_examples=1, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
MODEL = EmbeddedChatModel(max_tokens=160, temperature=0.0, seed=0)


def literal_model(values: list[str]) -> type[BaseModel]:
    return create_model("Pick", quote=(Literal[tuple(values)], ...))  # type: ignore[call-overload,valid-type]


@FEW
@given(TEXT)
def forced_value_round_trips(value: str) -> None:
    """A one-value enum leaves the model no choice: its JSON must parse back to the value."""
    raw = MODEL.with_structured_output(literal_model([value]), include_raw=True).invoke(
        "Copy the text.\nJSON:\n"
    )
    assert raw["parsing_error"] is None, raw["parsing_error"]
    assert json.loads(raw["raw"].content)["quote"] == value
    assert raw["parsed"].quote == value


@settings(FEW, max_examples=2)
@given(st.lists(TEXT, min_size=2, max_size=3, unique=True))
def picked_value_is_one_of_the_given_texts(values: list[str]) -> None:
    listing = "\n".join(f"- {value}" for value in values)
    out = MODEL.with_structured_output(literal_model(values)).invoke(
        f"Texts:\n{listing}\nCopy one of the texts exactly.\nJSON:\n"
    )
    assert out.quote in values  # type: ignore[union-attr]


def extractive_answer(sentences: list[str]) -> None:
    """The answer step's schema over ugly sentences: output parses, quotes are verbatim."""
    context = " ".join(sentences)
    schema = extractive_answer_schema([context])
    # quotes: list[Literal[<the context's sentences>]]
    (quote_type,) = get_args(schema.model_fields["quotes"].annotation)
    enum = get_args(quote_type)
    assert enum
    model = EmbeddedChatModel(max_tokens=400, temperature=0.0, seed=0)
    out = model.with_structured_output(schema).invoke(
        f"Context: {context}\nQuestion: What does the code check?\n"
        'Answer with JSON: {"answerable": ..., "answer": ..., "quotes": [...]}\nJSON:\n'
    )
    quotes = out.quotes  # type: ignore[union-attr]
    print(f"  answerable={out.answerable} quotes={quotes!r}")  # type: ignore[union-attr]
    for quote in quotes:
        assert quote in enum, quote  # one of the given sentences, verbatim


def reported_text() -> None:
    extractive_answer(
        [
            f'Check hasattr(sys, "real_prefix") to detect a virtualenv (value {REPORTED[2]}).',
            r"A Windows path such as C:\new\table needs a raw string.",
            'The JSON text "\\\\" holds one backslash.',
        ]
    )


@ONE
@given(st.lists(st.text(CHAR, min_size=12, max_size=30), min_size=2, max_size=3))
def extractive_random(texts: list[str]) -> None:
    extractive_answer([f"Line {i} reads {t.replace('.', ',')}." for i, t in enumerate(texts)])


def main() -> int:
    checks = [
        reported_text,
        forced_value_round_trips,
        picked_value_is_one_of_the_given_texts,
        extractive_random,
    ]
    for check in checks:
        started = time.perf_counter()
        try:
            check()
        except Exception:  # noqa: BLE001 - report every failure with its traceback
            traceback.print_exc()
            print(f"FAILED {check.__name__}", file=sys.stderr)
            return 1
        print(f"ok {check.__name__} ({time.perf_counter() - started:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
