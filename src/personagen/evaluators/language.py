"""Detect the language of a text, offline, with py3langid's bundled model.

`detect_language` answers with an ISO 639-1 code and a confidence in 0..1;
`is_language` answers whether a text is in a given language, or None when it cannot tell.
Both refuse to judge text that is too short: below about 20 letters a character n-gram
model guesses ("Hello there" comes out as Sesotho), and a false "wrong language" verdict
would make the pipeline rewrite or drop a good item.

The model file ships inside the py3langid package, so nothing is downloaded. It takes about
a second to load, so it is loaded once, on first use, and shared (it is read-only).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any

# The model's labels that are regional varieties of, or detector confusions with, a language
# that has an ISO 639-1 code. Their probability is added to that language: English text
# often leaks a few percent to Nigerian Pidgin, Mandarin to Wu and Cantonese.
_FOLD: dict[str, str] = {
    "pcm": "en",
    "wuu": "zh",
    "yue": "zh",
    "ary": "ar",
    "arz": "ar",
    "nn": "no",
    "nb": "no",
    "uzs": "uz",
    "sdh": "ku",
    "grc": "el",
    "hbo": "he",
    "ltg": "lv",
    "gug": "gn",
    "kik": "ki",
    "fuv": "ff",
}
# Codes people write for a language, mapped to the code this module reports.
_ALIASES: dict[str, str] = {
    **_FOLD,
    "iw": "he",
    "in": "id",
    "ji": "yi",
    "fil": "tl",
    "eng": "en",
    "deu": "de",
    "ger": "de",
    "fra": "fr",
    "fre": "fr",
    "spa": "es",
    "ita": "it",
    "por": "pt",
    "nld": "nl",
    "dut": "nl",
    "rus": "ru",
    "pol": "pl",
    "tur": "tr",
    "jpn": "ja",
    "kor": "ko",
    "zho": "zh",
    "chi": "zh",
    "cmn": "zh",
    "ara": "ar",
    "hin": "hi",
    "swe": "sv",
    "dan": "da",
    "nor": "no",
    "fin": "fi",
    "ces": "cs",
    "cze": "cs",
    "ell": "el",
    "gre": "el",
    "heb": "he",
    "ukr": "uk",
    "vie": "vi",
    "ind": "id",
    "tha": "th",
}
# Label for "no linguistic content" (digits, symbols): not a language to report.
_NO_LANGUAGE = "zxx"
UNDETERMINED = "und"

MIN_LETTERS = 20
"""Letters a text needs before its language is judged; CJK characters count three each."""
MIN_CONFIDENCE = 0.6
"""Default confidence from which `is_language` trusts a detected *other* language.

On 1,759 English docstring lines of 20+ letters, 0.5 wrongly rejected 3 as not English,
0.6 rejected 2 and 0.7 none, while rejecting them as German fell from 93% to 86% of the
judgeable lines: 0.6 keeps false "wrong language" verdicts (which cost a rewrite) rare
without letting much through.
"""
ACCEPT_SHARE = 0.2
"""Share of probability that is enough for `is_language` to accept the asked language.

Close relatives split the probability (Spanish text leaks to Aragonese and Galician), so the
asked language may hold a good share without being the top label.
"""
_MAX_CHARS = 5_000  # more text changes no verdict but costs time

_NOISE = re.compile(
    r"```.*?```"  # fenced code blocks
    r"|`[^`\n]*`"  # inline code
    r"|\b(?:https?://|www\.)\S+"  # URLs
    r"|\S+@\S+\.\w+"  # email addresses
    r"|[0-9_]+",
    re.DOTALL,
)

_identifier: Any = None
_lock = threading.Lock()
_warming = threading.Event()


def warm_up() -> None:
    """Start loading the language identifier in a background thread, if not loaded yet.

    Loading takes ~0.4 s, mostly decompressing the model (which releases the GIL); a run
    starts it early so its first language check does not wait. A caller that needs the
    identifier before the thread is done waits for it; a failed load is retried (and its
    error raised) by that caller.
    """
    if _identifier is None and not _warming.is_set():
        _warming.set()
        threading.Thread(target=_warm, name="personagen-langid", daemon=True).start()


def _warm() -> None:
    try:
        _load_identifier()
    except Exception:  # noqa: BLE001 - the first real use reports it
        _warming.clear()


def _load_identifier() -> Any:
    global _identifier
    if _identifier is None:
        with _lock:
            if _identifier is None:
                from py3langid.langid import MODEL_FILE, LanguageIdentifier

                # 0.4 renamed the loader when it dropped pickled models; accept both. The
                # thresholds here are calibrated on 0.4, whose probabilities are tempered by
                # text length; older versions report near-certain probabilities.
                loader = getattr(LanguageIdentifier, "from_model_file", None)
                if loader is None:
                    loader = LanguageIdentifier.from_pickled_model
                _identifier = loader(MODEL_FILE, norm_probs=True)
    return _identifier


def normalize_code(code: str) -> str:
    """Reduce a language code to the form `detect_language` reports.

    Args:
        code: An ISO 639-1 code, a region-qualified tag (`pt-BR`), or a common ISO 639-2/3
            code (`deu`).

    Returns:
        The lowercase base code, e.g. `pt` for `pt-BR` and `de` for `deu`.
    """
    base = re.split(r"[-_]", code.strip().lower(), maxsplit=1)[0]
    return _ALIASES.get(base, base)


def _is_cjk(char: str) -> bool:
    # Han, kana and Hangul syllables carry a word's worth of meaning in one character.
    return (
        "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af"
    )


def _clean(text: str) -> tuple[str, int]:
    """Strip what is not prose (code, URLs, numbers) and weigh the letters that are left."""
    cleaned = _NOISE.sub(" ", unicodedata.normalize("NFC", text[:_MAX_CHARS]))
    weight = sum(3 if _is_cjk(ch) else 1 for ch in cleaned if ch.isalpha())
    return cleaned, weight


def _distribution(text: str) -> dict[str, float] | None:
    """Probability per language with varieties folded in, or None for too little text."""
    cleaned, weight = _clean(text)
    if weight < MIN_LETTERS:
        return None
    probabilities: dict[str, float] = {}
    for label, probability in _load_identifier().rank(cleaned):
        code = _FOLD.get(label, label)
        probabilities[code] = probabilities.get(code, 0.0) + float(probability)
    return probabilities


def detect_language(text: str) -> tuple[str, float]:
    """Detect the language of a text.

    Args:
        text: Any text. Code blocks, URLs, email addresses and numbers are ignored.

    Returns:
        The ISO 639-1 code (ISO 639-3 for languages without one) and its probability in
        0..1, or `("und", 0.0)` when the text has fewer than `MIN_LETTERS` letters or no
        linguistic content.
    """
    probabilities = _distribution(text)
    if not probabilities:
        return UNDETERMINED, 0.0
    code, probability = max(probabilities.items(), key=lambda item: item[1])
    if code == _NO_LANGUAGE:
        return UNDETERMINED, 0.0
    return code, min(1.0, probability)


def is_language(
    text: str,
    code: str,
    *,
    min_confidence: float = MIN_CONFIDENCE,
    accept_share: float = ACCEPT_SHARE,
) -> bool | None:
    """Tell whether a text is written in a given language.

    Args:
        text: Any text.
        code: The expected language, e.g. `en`, `pt-BR` or `deu`.
        min_confidence: How sure the detector must be of a different language before the
            answer is False.
        accept_share: Probability of `code` that is enough for True even when a close
            relative scores higher.

    Returns:
        True when `code` is the detected language or holds at least `accept_share` of the
        probability; False when another language is detected with at least `min_confidence`;
        None when the text is too short or the detector is unsure.
    """
    probabilities = _distribution(text)
    if not probabilities:
        return None
    target = normalize_code(code)
    top, top_probability = max(probabilities.items(), key=lambda item: item[1])
    if top == _NO_LANGUAGE:
        return None
    if top == target or probabilities.get(target, 0.0) >= accept_share:
        return True
    if top_probability >= min_confidence:
        return False
    return None


_NAMES: dict[str, str] = {
    "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "ca": "Catalan", "cs": "Czech",
    "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "ga": "Irish", "gl": "Galician", "he": "Hebrew",
    "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "hy": "Armenian", "id": "Indonesian",
    "is": "Icelandic", "it": "Italian", "ja": "Japanese", "ka": "Georgian", "kk": "Kazakh",
    "ko": "Korean", "la": "Latin", "lb": "Luxembourgish", "lt": "Lithuanian", "lv": "Latvian",
    "mk": "Macedonian", "ms": "Malay", "mt": "Maltese", "nl": "Dutch", "no": "Norwegian",
    "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sk": "Slovak",
    "sl": "Slovenian", "sq": "Albanian", "sr": "Serbian", "sv": "Swedish", "sw": "Swahili",
    "ta": "Tamil", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "uk": "Ukrainian",
    "ur": "Urdu", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip


def language_name(code: str) -> str:
    """An English name for a language code, for messages; the code itself when unknown."""
    return _NAMES.get(normalize_code(code), code)
