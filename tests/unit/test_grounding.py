"""Quote grounding: exact, whitespace- and case-tolerant, fuzzy; spans on word boundaries."""

from __future__ import annotations

import pytest

from personagen.evaluators.grounding import find_quote, is_extractive

TEXT = (
    "# Costs\n\nSolicitor fees usually cost between one and two thousand pounds for a purchase. "
    "A survey of the property costs between four hundred and fifteen hundred pounds.\n\n"
    "First-time buyers often pay a reduced property purchase tax below a price threshold.\n"
)
FEES = "Solicitor fees usually cost between one and two thousand pounds for a purchase."


@pytest.mark.parametrize(
    ("quote", "expected"),
    [
        (FEES, FEES),  # exact
        ("Solicitor fees usually   cost between one\nand two thousand pounds", None),  # spaces
        (FEES.upper(), FEES),  # case
        # fuzzy: a typo, a dropped word, an extra word: the span is the source's own words
        ("Solicitor fees usualy cost between one and two thousand pounds for purchase.", FEES),
        (FEES + " (checked)", FEES),
        ("fees usually cost between one and two thousand pounds", None),
    ],
)
def test_quotes_are_found_as_spans_of_the_source(quote: str, expected: str | None) -> None:
    found = find_quote(quote, TEXT)
    assert found is not None
    text = TEXT[found[0] : found[1]]
    if expected is None:  # the quote's own words, as the source writes them
        assert " ".join(text.split()).lower() == " ".join(quote.split()).lower()
    else:
        assert text == expected


def test_fuzzy_spans_start_and_end_on_word_boundaries() -> None:
    quote = "the property costs between four hundred and fifteen hundred pounds. Also"
    start, end = find_quote(quote, TEXT) or (0, 0)
    assert TEXT[start - 1] in " \n" and TEXT[end - 1] == "."
    assert TEXT[start:end].startswith("the property")


@pytest.mark.parametrize("quote", ["Lenders love cats and dogs of all sizes.", "short", ""])
def test_text_not_in_the_source_is_not_found(quote: str) -> None:
    assert find_quote(quote, TEXT) is None


def test_extractive_means_made_of_the_spans_only() -> None:
    assert is_extractive(FEES, [FEES])
    assert not is_extractive(FEES + " Ask the lender.", [FEES])
    assert not is_extractive(FEES, [])


def test_quotes_are_looked_up_in_other_documents_when_asked() -> None:
    from personagen.evaluators.grounding import ground_quotes
    from personagen.state.items import RetrievedContext

    other = "Notes.\n\nA bigger deposit usually gets you a lower interest rate on the mortgage."
    texts = {"costs": TEXT, "deposits": other}
    context = RetrievedContext(
        chunk_id="c", doc_id="costs", start=0, end=len(TEXT), score=1.0, text=TEXT
    )
    quote = "A bigger deposit usually gets you a lower interest rate on the mortgage."
    spans, missed = ground_quotes([FEES, quote], [context], texts.__getitem__)
    assert [s.doc_id for s in spans] == ["costs"] and missed == [quote]
    spans, missed = ground_quotes([FEES, quote], [context], texts.__getitem__, also_in=texts)
    assert [s.doc_id for s in spans] == ["costs", "deposits"] and not missed
    assert other[spans[1].start : spans[1].end] == quote
