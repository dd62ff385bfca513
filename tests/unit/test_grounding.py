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
