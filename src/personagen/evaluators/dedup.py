"""Near-duplicate detection for generated questions.

Two questions are near-duplicates when, after normalisation (case folded, punctuation
stripped, English contractions expanded so "What's" equals "What is"), their
`token_sort_ratio` reaches the threshold *and* every content word of one has a counterpart
in the other. Optionally, embeddings add a second, semantic signal.

Why `token_sort_ratio` and not `token_set_ratio`: both ignore word order, but
`token_set_ratio` scores 100 whenever one question's words are a subset of the other's, so
"How do I apply for a mortgage?" would duplicate "How do I apply for a mortgage as a
self-employed nurse?", which asks something narrower. `token_sort_ratio` compares the whole
sorted word sequence, so added words lower the score.

Why the content-word guard: a character ratio forgives a one-word change in a long
question, and that word is often the point ("... first-time buyers in Germany?" vs
"... in France?" scores 94). The guard requires each word outside a small stop-word list to
appear in the other question, or a close spelling variant of it (plural, typo); numbers and
words of three letters or fewer must appear exactly, so "v2" never duplicates "v3".

Two exceptions to the guard, because a question the small model writes twice often differs
by just that: "which" and "what" are the same question word ("Which documents ..." /
"What documents ..."), and one content word *added* on one side only ("... pre-approval?" /
"... pre-approval letter?") is forgiven when the pair's ratio is high anyway (at least
`ADDITION_RATIO`), unless the word is a number or a negation ("safe" / "not safe"). A word
*swapped* for another (Germany / France, fixed / variable) is never forgiven.

Embedding similarity catches paraphrases that share few words, but embeddings are blind to
numbers, so that path still requires both questions to hold the same numbers.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence, Set

import numpy as np
from rapidfuzz import fuzz, process

DEFAULT_THRESHOLD = 0.9
"""Default `token_sort_ratio` (0..1) from which two questions are near-duplicates."""
DEFAULT_EMBEDDING_THRESHOLD = 0.95
"""Default cosine similarity from which two question embeddings mark a duplicate.

Sentence embedders (e5, OpenAI text-embedding-3) give related but different questions
cosines of 0.8-0.9; 0.95 is reserved for the same question in other words.
"""
ADDITION_RATIO = 0.92
"""`token_sort_ratio` (0..1) from which one content word added on one side is forgiven."""
_WORD_VARIANT = 80.0  # `fuzz.ratio` from which two content words are the same word
# Words that turn a question around: never forgiven as an addition.
_NEGATIONS = frozenset(
    "not no never without nothing none nor nicht kein keine nie ohne ne pas jamais sans ni "
    "nunca sin ningún ninguna".split()
)
# Question words that ask the same thing (normalized to the first).
_SAME_QUESTION_WORD = ((re.compile(r"\bwhich\b"), "what"),)

_CONTRACTIONS = (
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"\bcannot\b"), "can not"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'m\b"), " am"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'d\b"), " would"),
    # "'s" is also the possessive; reading it as "is" on both sides keeps equal texts equal.
    (re.compile(r"'s\b"), " is"),
)
_NON_WORD = re.compile(r"[\W_]+")

# Function words that rephrasing swaps freely ("How can I" / "How do I"). English plus the
# most frequent German, French and Spanish ones; other languages simply get a stricter guard.
# Question words, negations and directions (to/from) are left out on purpose: "When ...?"
# and "Why ...?", "... safe?" and "... not safe?" ask different things.
_STOP_WORDS = frozenset(
    """
    a an the this that these those is are was were be been being am do does did done doing
    have has had having will would shall should can could may might must i me my mine we us
    our you your he him his she her it its they them their if then than so of in on at by
    for with about as and or but any some there here please also just
    der die das den dem des ein eine einen einem einer ist sind war waren bin bist sein wird
    werden kann können muss müssen soll sollte ich mich mir wir uns du sie er es ihr und
    oder aber zu im in an auf für mit bei
    le la les un une des du de est sont suis être ai as avons ont je me moi nous vous il elle
    ils elles on ce cette ces et ou mais à au aux en dans pour par avec sur
    el los las unos unas es son soy ser estar está están yo tú usted nosotros ellos ellas
    por para con y o pero se lo mi su del al
    """.split()
)


def normalize_question(text: str) -> str:
    """Fold a question to the form the similarity is computed on.

    Args:
        text: A question.

    Returns:
        Lowercase words separated by single spaces, contractions expanded, no punctuation.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    for pattern, replacement in (*_CONTRACTIONS, *_SAME_QUESTION_WORD):
        text = pattern.sub(replacement, text)
    return _NON_WORD.sub(" ", text).strip()


def _content_words(normalized: str) -> set[str]:
    return {word for word in normalized.split() if word not in _STOP_WORDS}


def content_words(text: str) -> set[str]:
    """The words of `text` that carry its meaning: normalized, function words left out.

    Args:
        text: Any text (a question, an excerpt).

    Returns:
        The set of normalized words outside the stop-word list.
    """
    return _content_words(normalize_question(text))


def same_word(word: str, others: Set[str]) -> bool:
    """Whether `word`, or a close spelling variant of it (plural, typo), is in `others`.

    Numbers and words of three letters or fewer count only when they are there exactly.
    """
    return _has_counterpart(word, set(others))


def _numbers(normalized: str) -> frozenset[str]:
    return frozenset(word for word in normalized.split() if any(ch.isdigit() for ch in word))


def _has_counterpart(word: str, others: set[str]) -> bool:
    if word in others:
        return True
    if len(word) <= 3 or any(ch.isdigit() for ch in word):
        return False
    return any(fuzz.ratio(word, other) >= _WORD_VARIANT for other in others)


def _same_content(a: set[str], b: set[str], ratio: float = 0.0) -> bool:
    """Whether every content word of each side has a counterpart on the other side.

    With `ratio` at least `ADDITION_RATIO`, one word added on one side only is forgiven
    (not a number, not a negation).
    """
    missing_in_b = [w for w in a - b if not _has_counterpart(w, b)]
    missing_in_a = [w for w in b - a if not _has_counterpart(w, a)]
    unmatched = missing_in_b + missing_in_a
    if not unmatched:
        return True
    if ratio < ADDITION_RATIO or len(unmatched) > 1:
        return False
    word = unmatched[0]
    return word not in _NEGATIONS and not any(ch.isdigit() for ch in word)


def _cosine_matrix(embeddings: Sequence[Sequence[float]], count: int) -> np.ndarray:
    if len(embeddings) != count:
        raise ValueError(f"got {len(embeddings)} embeddings for {count} texts")
    try:
        matrix = np.asarray(embeddings, dtype=np.float32)
    except ValueError as exc:  # ragged lists
        raise ValueError("embeddings must all have the same length") from exc
    if matrix.ndim != 2:
        raise ValueError("embeddings must all have the same length")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    # A zero vector (failed embedding) has no direction: leave it similar to nothing.
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return unit @ unit.T


def _similarities(
    texts: Sequence[str],
    threshold: float,
    embeddings: Sequence[Sequence[float]] | None,
    embedding_threshold: float,
) -> dict[tuple[int, int], float]:
    """Similarity of every near-duplicate pair (i < j)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    if not -1.0 <= embedding_threshold <= 1.0:
        raise ValueError(f"embedding_threshold must be between -1 and 1, got {embedding_threshold}")
    count = len(texts)
    cosines = _cosine_matrix(embeddings, count) if embeddings is not None else None
    if count < 2:
        return {}
    normalized = [normalize_question(text) for text in texts]
    content = [_content_words(text) for text in normalized]
    pairs: dict[tuple[int, int], float] = {}

    # token_sort_ratio is `ratio` on the sorted words; sorting once here instead of per pair
    # makes the n^2 cdist (in C, on all cores) over ten times faster. The guard then runs
    # only on the few pairs above the cutoff.
    sorted_words = [" ".join(sorted(text.split())) for text in normalized]
    scores = process.cdist(
        sorted_words,
        sorted_words,
        scorer=fuzz.ratio,
        score_cutoff=threshold * 100,
        dtype=np.float32,
        workers=-1,
    )
    for i, j in zip(*np.nonzero(np.triu(scores, k=1)), strict=True):
        i, j = int(i), int(j)
        ratio = float(scores[i, j]) / 100
        if _same_content(content[i], content[j], ratio):
            pairs[(i, j)] = round(ratio, 4)
    if cosines is not None:
        numbers = [_numbers(text) for text in normalized]
        for i, j in zip(*np.nonzero(np.triu(cosines >= embedding_threshold, k=1)), strict=True):
            i, j = int(i), int(j)
            if numbers[i] == numbers[j]:
                cosine = round(min(1.0, float(cosines[i, j])), 4)
                pairs[(i, j)] = max(pairs.get((i, j), 0.0), cosine)
    return pairs


def near_duplicates(
    texts: list[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    embeddings: list[list[float]] | None = None,
    embedding_threshold: float = DEFAULT_EMBEDDING_THRESHOLD,
) -> list[tuple[int, int, float]]:
    """Find every pair of near-duplicate texts.

    Args:
        texts: The questions, in order.
        threshold: `token_sort_ratio` (0..1) from which a pair is a near-duplicate.
        embeddings: One embedding per text, to also catch paraphrases; optional.
        embedding_threshold: Cosine similarity from which embeddings mark a pair.

    Returns:
        `(kept_index, duplicate_index, similarity)` for each pair, the earlier index first,
        sorted by index. `similarity` is the higher of the fuzzy score and, when it fired,
        the cosine similarity.

    Raises:
        ValueError: If a threshold is out of range or the embeddings do not fit the texts.
    """
    pairs = _similarities(texts, threshold, embeddings, embedding_threshold)
    return [(i, j, score) for (i, j), score in sorted(pairs.items())]


def dedupe(
    texts: list[str],
    protected: Set[int] = frozenset(),
    *,
    threshold: float = DEFAULT_THRESHOLD,
    embeddings: list[list[float]] | None = None,
    embedding_threshold: float = DEFAULT_EMBEDDING_THRESHOLD,
) -> tuple[list[int], list[tuple[int, int, float]]]:
    """Drop near-duplicates, keeping the first of each group and every protected text.

    Texts are visited in order, and one is removed when it duplicates a text that stays.
    Protected texts (the user's own questions) always stay, even when they duplicate each
    other, and they count as staying from the start, so a generated question that
    duplicates a later protected one is removed. Chains do not propagate: if B duplicates
    A and C duplicates only B, C stays, because B is gone.

    Args:
        texts: The questions, in order.
        protected: Indices that must never be removed.
        threshold: See `near_duplicates`.
        embeddings: See `near_duplicates`.
        embedding_threshold: See `near_duplicates`.

    Returns:
        The kept indices in order, and `(kept_index, removed_index, similarity)` for each
        removed text, naming the most similar text that stays.

    Raises:
        ValueError: If a protected index is out of range, a threshold is out of range or the
            embeddings do not fit the texts.
    """
    bad = [index for index in protected if not 0 <= index < len(texts)]
    if bad:
        raise ValueError(f"protected indices out of range for {len(texts)} texts: {sorted(bad)}")
    pairs = _similarities(texts, threshold, embeddings, embedding_threshold)
    neighbours: dict[int, list[tuple[int, float]]] = {}
    for (i, j), score in pairs.items():
        neighbours.setdefault(i, []).append((j, score))
        neighbours.setdefault(j, []).append((i, score))

    staying = set(protected)
    removed: list[tuple[int, int, float]] = []
    for index in range(len(texts)):
        if index in staying:
            continue
        matches = [(score, other) for other, score in neighbours.get(index, []) if other in staying]
        if matches:
            # Most similar first; on ties the earliest text.
            score, other = max(matches, key=lambda m: (m[0], -m[1]))
            removed.append((other, index, score))
        else:
            staying.add(index)
    return sorted(staying), removed
