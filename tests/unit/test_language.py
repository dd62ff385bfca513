"""Language detection with the bundled py3langid model: sentences, short text, verdicts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from personagen.evaluators import language
from personagen.evaluators.language import (
    detect_language,
    is_language,
    language_name,
    normalize_code,
)

SENTENCES = [
    ("en", "How do I apply for a mortgage as a first-time buyer?"),
    ("en", "Which documents are needed to open a bank account?"),
    ("en", "Configure the Kubernetes ingress controller with TLS termination."),
    ("en", "Nurses working night shifts often struggle to sleep during the day."),
    ("de", "Wie beantrage ich als Erstkäufer eine Hypothek?"),
    ("de", "Welche Unterlagen brauche ich für die Eröffnung eines Kontos?"),
    ("de", "Die Pflegekräfte arbeiten oft im Schichtdienst und schlafen schlecht."),
    ("fr", "Comment demander un prêt immobilier pour un premier achat ?"),
    ("fr", "Quels documents faut-il pour ouvrir un compte bancaire ?"),
    ("fr", "Les infirmières travaillent souvent de nuit et dorment mal."),
    ("es", "¿Cómo solicito una hipoteca como comprador primerizo?"),
    ("es", "¿Qué documentos necesito para abrir una cuenta bancaria?"),
    ("es", "Las enfermeras suelen trabajar en turnos de noche y duermen mal."),
    ("zh", "开立银行账户需要哪些文件？"),
    ("ja", "口座開設に必要な書類は何ですか？"),
]


@pytest.mark.parametrize(("code", "text"), SENTENCES)
def test_detects_language(code: str, text: str) -> None:
    detected, confidence = detect_language(text)
    assert detected == code
    assert 0.5 < confidence <= 1.0


@pytest.mark.parametrize(("code", "text"), SENTENCES)
def test_is_language_true_for_own_false_for_others(code: str, text: str) -> None:
    assert is_language(text, code) is True
    for other in {"en", "de", "fr", "es"} - {code}:
        assert is_language(text, other) is False


@pytest.mark.parametrize(
    "text",
    ["", "   ", "ok", "Hello there", "Danke schön", "What is X?", "12345 678", "API v2 SDK", "?!"],
)
def test_short_text_is_undetermined(text: str) -> None:
    assert detect_language(text) == ("und", 0.0)
    assert is_language(text, "en") is None
    assert is_language(text, "de") is None


def test_numbers_urls_and_code_do_not_count_as_letters() -> None:
    text = "See https://example.com/path/to/docs `pip install x` 1234 5678 a@b.com"
    assert detect_language(text) == ("und", 0.0)


def test_code_and_urls_do_not_sway_the_verdict() -> None:
    text = (
        "Um das Paket zu installieren, führen Sie den folgenden Befehl aus und starten Sie "
        "danach den Dienst neu: ```pip install --upgrade personagen && systemctl restart "
        "personagen.service``` Details unter https://example.com/docs/install/english-guide"
    )
    assert detect_language(text)[0] == "de"


def test_mixed_technical_terms_keep_the_main_language() -> None:
    text = "Die Kubernetes Ingress Controller Konfiguration braucht ein TLS Secret."
    assert is_language(text, "de") is True
    assert is_language(text, "en") is False


def test_cjk_counts_more_per_character() -> None:
    # Eleven Han characters are a full question; in Latin script 11 letters would not be.
    assert detect_language("抵押贷款的利率是多少？")[0] == "zh"


def test_region_and_three_letter_codes() -> None:
    text = "How do I apply for a mortgage as a first-time buyer?"
    assert is_language(text, "en-US") is True
    assert is_language(text, "eng") is True
    assert is_language(text, "EN") is True
    assert is_language(text, "deu") is False


@pytest.mark.parametrize(
    ("code", "expected"),
    [("en", "en"), ("pt-BR", "pt"), ("zh_TW", "zh"), ("deu", "de"), ("nb", "no"), ("iw", "he")],
)
def test_normalize_code(code: str, expected: str) -> None:
    assert normalize_code(code) == expected


def test_language_name() -> None:
    assert language_name("de") == "German"
    assert language_name("pt-BR") == "Portuguese"
    assert language_name("xx") == "xx"


def test_unsure_detection_is_none() -> None:
    # Raising the bar above any real confidence turns every "other language" into "unsure".
    text = "Wie beantrage ich als Erstkäufer eine Hypothek?"
    assert is_language(text, "en", min_confidence=1.01) is None
    assert is_language(text, "de", min_confidence=1.01) is True


def test_model_is_loaded_once() -> None:
    detect_language("How do I apply for a mortgage as a first-time buyer?")
    first = language._load_identifier()
    detect_language("Wie beantrage ich als Erstkäufer eine Hypothek?")
    assert language._load_identifier() is first


def test_model_loads_without_network() -> None:
    # A fresh interpreter where any socket use fails: the model must come from the package.
    code = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network access attempted")

        socket.socket = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from personagen.evaluators.language import detect_language
        print(detect_language("How do I apply for a mortgage as a first-time buyer?")[0])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "en"
