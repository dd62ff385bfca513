"""PII detection: true positives per kind, and the look-alikes that must not match."""

from __future__ import annotations

import pytest

from personagen.evaluators.pii import (
    PiiMatch,
    find_pii,
    iban_valid,
    luhn_valid,
    mask,
    ssn_valid,
)
from personagen.state.spec import PII_KINDS

POSITIVES = [
    # email
    ("email", "Contact john.doe@example.com for details.", "john.doe@example.com"),
    ("email", "Write to 'jane_doe+news@mail.example.co.uk'.", "jane_doe+news@mail.example.co.uk"),
    ("email", "Mail: ANNA-MARIA.O@Firma.DE", "ANNA-MARIA.O@Firma.DE"),
    ("email", "ends a sentence a.b@example.org.", "a.b@example.org"),
    # phone, international
    ("phone", "Call +44 20 7946 0958 today", "+44 20 7946 0958"),
    ("phone", "Reach me on +1 (555) 234-5678.", "+1 (555) 234-5678"),
    ("phone", "Büro +49 30 1234567", "+49 30 1234567"),
    ("phone", "Paris: +33 1 23 45 67 89", "+33 1 23 45 67 89"),
    ("phone", "from abroad 0049 30 1234567", "0049 30 1234567"),
    ("phone", "UK office +44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
    # phone, national formats
    ("phone", "Our number is (555) 234-5678.", "(555) 234-5678"),
    ("phone", "ask 555-123-4567 or", "555-123-4567"),
    ("phone", "dial 1-800-555-1234", "1-800-555-1234"),
    ("phone", "at 555.234.5678", "555.234.5678"),
    ("phone", "London 020 7946 0958", "020 7946 0958"),
    ("phone", "mobile 07700 900123", "07700 900123"),
    ("phone", "Berlin 030/1234567", "030/1234567"),
    ("phone", "Paris 01 23 45 67 89", "01 23 45 67 89"),
    ("phone", "Tokio 03-1234-5678", "03-1234-5678"),
    ("phone", "Amsterdam 06-12345678", "06-12345678"),
    # phone, ambiguous shapes vouched for by a label
    ("phone", "Tel. 912 345 678", "912 345 678"),
    ("phone", "call 5551234567 now", "5551234567"),
    ("phone", "Fax: 555-1234", "555-1234"),
    # credit card
    ("credit_card", "Card 4111 1111 1111 1111 expires", "4111 1111 1111 1111"),
    ("credit_card", "pay with 4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("credit_card", "number 4111111111111111.", "4111111111111111"),
    ("credit_card", "Amex 3782 822463 10005", "3782 822463 10005"),
    ("credit_card", "MC 5555 5555 5555 4444", "5555 5555 5555 4444"),
    ("credit_card", "MC 2-series 2223 0031 2200 3222", "2223 0031 2200 3222"),
    ("credit_card", "Discover 6011 1111 1111 1117", "6011 1111 1111 1117"),
    ("credit_card", "Diners 3056 930902 5904", "3056 930902 5904"),
    # US SSN
    ("ssn", "SSN 123-45-6789 on file", "123-45-6789"),
    ("ssn", "number 536 22 1234", "536 22 1234"),
    ("ssn", "ssn: 123456789", "123456789"),
    ("ssn", "Social Security Number 665-01-0001", "665-01-0001"),
    # IBAN
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00"),
    ("iban", "pay to GB82WEST12345698765432.", "GB82WEST12345698765432"),
    ("iban", "konto BE68 5390 0754 7034 BANK", "BE68 5390 0754 7034"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606", "FR14 2004 1010 0505 0001 3M02 606"),
    ("iban", "lower case de89370400440532013000", "de89370400440532013000"),
    # IP addresses
    ("ip_address", "from 192.168.1.25 at noon", "192.168.1.25"),
    ("ip_address", "gateway 203.0.113.9.", "203.0.113.9"),
    ("ip_address", "AWS host 3.85.117.42", "3.85.117.42"),
    ("ip_address", "see http://10.0.0.7/admin", "10.0.0.7"),
    ("ip_address", "host 2001:db8::8a2e:370:7334 up", "2001:db8::8a2e:370:7334"),
    ("ip_address", "link-local fe80::1%eth0", "fe80::1%eth0"),
    ("ip_address", "mapped ::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ("ip_address", "address fe80::1: reachable", "fe80::1"),
]


@pytest.mark.parametrize(("kind", "text", "expected"), POSITIVES)
def test_finds_pii(kind: str, text: str, expected: str) -> None:
    matches = find_pii(text)
    assert [(m.kind, m.text) for m in matches] == [(kind, expected)]
    match = matches[0]
    assert text[match.start : match.end] == match.text


NEGATIVES = [
    # emails that are not
    "icon@2x.png and logo@3x.webp",
    "git@github.com:owner/repo.git",
    "decorators like @property and @dataclass",
    "user@localhost is not routable",
    # years, dates, times
    "founded in 1999, relaunched in 2024",
    "between 2020-2023 and 2019 2020 2021",
    "due 2023-01-15, 15.01.2024 or 01/15/2024",
    "at 2024-01-15T10:30:00Z",
    # prices and amounts
    "costs $1,234,567.89 or € 1.234.567",
    "about 1 234 567 € in total",
    "USD 12 345 678 was raised",
    "price 12.99, discount 20%",
    # version strings and build numbers
    "Windows 10.0.19041.1 and Chrome 120.0.6099.109",
    "version 1.2.3.4 and v1.2.3.4",
    "python 3.11.4 requires pip 23.2.1",
    "Git 1.7.12.1 Release Notes, see 3.2.2.10 and 2.7.2.3",
    "public resolvers 1.1.1.1 and 8.8.8.8",
    "numbers like 0.7.100.3 are not hosts",
    # ISBNs, barcodes, IMEIs
    "ISBN 978-3-16-148410-0",
    "ISBN-10 0-306-40615-2",
    "978-0-306-40615-7 and 9783161484100",
    "EAN 4006381333931",
    "IMEI 490154203237518",
    # order, invoice and tracking numbers
    "Order #123-456-7890 shipped",
    "order number: 020 7946 0958",
    "invoice 4111111111111111",
    "tracking 1Z999AA10123456784",
    "Ref 123-45-6789 in our system",
    # plain numbers
    "population 1234567890",
    "code 0123456789",
    "it grew by +20% to 10000000",
    "pi is 3.14159265358979",
    "rng = default_rng(6763691329830218206)",
    "snowflake id 1234567890123456789",
    "int32 range -2147483648 to +2147483647",
    "Boston, MA 02110-1301, USA",
    "timestamp +1980-02-29 01:02:03",
    "coordinates +40.7128, -74.0060",
    # numbers that fail validation
    "card 4111 1111 1111 1112",
    "1234 5678 9012 3456",
    "0000 0000 0000 0000",
    "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",
    "the famous 078-05-1120",
    "DE89 3704 0044 0532 0130 01",
    "XX12 3456 7890",
    # IP look-alikes and non-addresses
    "localhost 127.0.0.1 and bind 0.0.0.0",
    "netmask 255.255.255.0 and 255.255.0.0",
    "256.1.1.1 and 1.2.3 and 1.2.3.4.5",
    "slice x[::2] or ::1",
    "time 12:30:45 and MAC 00:1A:2B:3C:4D:5E",
    "C++ fac::bad",
    "defaults to 1000:: and a[100::200]",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_ignores_look_alikes(text: str) -> None:
    assert find_pii(text) == []


def test_adjacent_numbers_are_split() -> None:
    # Space-joined runs that fail as a whole are retried at shorter lengths.
    assert [m.text for m in find_pii("call 555-234-5678 555-234-5679 now")] == [
        "555-234-5678",
        "555-234-5679",
    ]


def test_kinds_filter() -> None:
    text = "mail a@example.com, call +44 20 7946 0958"
    assert [m.kind for m in find_pii(text, kinds=["phone"])] == ["phone"]
    assert [m.kind for m in find_pii(text, kinds=("email",))] == ["email"]
    assert find_pii(text, kinds=[]) == []
    assert [m.kind for m in find_pii(text)] == ["email", "phone"]


def test_unknown_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="passport"):
        find_pii("x", kinds=["passport"])


def test_card_is_not_also_a_phone() -> None:
    # Overlaps are resolved before filtering, so asking for phones alone finds nothing.
    assert find_pii("4111 1111 1111 1111", kinds=["phone"]) == []


def test_matches_are_ordered_and_positioned() -> None:
    text = "IP 203.0.113.9, mail x@example.com, card 4111111111111111"
    matches = find_pii(text)
    assert [m.kind for m in matches] == ["ip_address", "email", "credit_card"]
    assert all(text[m.start : m.end] == m.text for m in matches)
    assert matches == sorted(matches, key=lambda m: m.start)


@pytest.mark.parametrize("text", ["", "   ", "no personal data here at all"])
def test_empty_and_clean_text(text: str) -> None:
    assert find_pii(text) == []


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("john.doe@example.com", "j***@example.com"),
        ("4111 1111 1111 1111", "**** **** **** 1111"),
        ("123-45-6789", "***-**-**89"),
        ("+44 20 7946 0958", "+** ** **** *958"),
        ("DE89 3704 0044 0532 0130 00", "**** **** **** **** **30 00"),
        ("8.8.8.8", "*.*.*.*"),
        ("abc", "***"),
    ],
)
def test_mask(raw: str, masked: str) -> None:
    assert mask(raw) == masked


def test_mask_hides_most_characters() -> None:
    for _, _, raw in POSITIVES:
        masked = mask(raw)
        if "@" in raw:
            continue
        hidden = sum(ch == "*" for ch in masked)
        visible = sum(ch.isalnum() for ch in masked)
        assert visible <= 4 and hidden >= 3 * visible, (raw, masked)


def test_match_masked_property() -> None:
    match = PiiMatch("email", 0, 16, "anna@example.com")
    assert match.masked == "a***@example.com"


@pytest.mark.parametrize(
    ("digits", "valid"),
    [("4111111111111111", True), ("4111111111111112", False), ("79927398713", True)],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    ("parts", "valid"),
    [
        (("123", "45", "6789"), True),
        (("000", "45", "6789"), False),
        (("666", "45", "6789"), False),
        (("901", "45", "6789"), False),
        (("123", "00", "6789"), False),
        (("123", "45", "0000"), False),
        (("078", "05", "1120"), False),
    ],
)
def test_ssn_rules(parts: tuple[str, str, str], valid: bool) -> None:
    assert ssn_valid(*parts) is valid


@pytest.mark.parametrize(
    ("iban", "valid"),
    [
        ("DE89370400440532013000", True),
        ("GB82WEST12345698765432", True),
        ("NO9386011117947", True),
        ("DE89370400440532013001", False),  # checksum
        ("DE8937040044053201300", False),  # German IBANs have 22 characters
        ("1234567890123456", False),
    ],
)
def test_iban_check(iban: str, valid: bool) -> None:
    assert iban_valid(iban) is valid


def test_all_spec_kinds_are_detectable() -> None:
    text = (
        "a@example.com, +44 20 7946 0958, 4111 1111 1111 1111, 123-45-6789, "
        "DE89 3704 0044 0532 0130 00, 192.168.1.25"
    )
    assert {m.kind for m in find_pii(text)} == set(PII_KINDS)
