"""Find personal data (PII) in text by pattern, then validate each candidate.

Kinds follow `personagen.state.spec.PII_KINDS`: email, phone, credit_card, ssn, iban and
ip_address. Every pattern is only a candidate generator; a candidate becomes a match after a
validation step that carries most of the precision: the Luhn checksum for cards, the SSA's
invalid-number rules for SSNs, country length plus mod-97 for IBANs, octet ranges for IP
addresses, and shape and context rules for phone numbers (which otherwise collide with years,
dates, prices, ISBNs, version strings and order numbers).

A number right after a label such as "order", "invoice", "ISBN", "version" or "section" is
not reported as a card, phone, SSN or IPv4 address; a phone label ("Tel.", "call") instead
vouches for a phone number in a shape that would otherwise be too ambiguous. Overlaps are
resolved across all kinds before the `kinds` filter is applied, so a card number is never
also reported as a phone number when only phones are asked for.

Known limits: phone numbers without a "+", a trunk "0", a North American 3-3-4 layout or a
label (e.g. "138 0013 8000") are missed on purpose, as that shape is as often an amount.

Use `mask` to quote a match in reports without copying the personal data.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from personagen.state.spec import PII_KINDS

PiiKind = Literal["email", "phone", "credit_card", "ssn", "iban", "ip_address"]

# Human-readable names for reasons such as "answer contains an email address (...)".
KIND_NAMES: dict[str, tuple[str, str]] = {
    "email": ("an email address", "email addresses"),
    "phone": ("a phone number", "phone numbers"),
    "credit_card": ("a credit card number", "credit card numbers"),
    "ssn": ("a US social security number", "US social security numbers"),
    "iban": ("an IBAN", "IBANs"),
    "ip_address": ("an IP address", "IP addresses"),
}

# When two candidates overlap, the kind with the stricter validation wins: an IBAN or card
# number passes a checksum, while a phone number is only a plausible shape.
_PRIORITY: dict[str, int] = {
    "email": 0,
    "iban": 1,
    "credit_card": 2,
    "ssn": 3,
    "ip_address": 4,
    "phone": 5,
}


@dataclass(frozen=True, slots=True)
class PiiMatch:
    """One piece of personal data found in a text; `text == source[start:end]`."""

    kind: PiiKind
    start: int
    end: int
    text: str

    @property
    def masked(self) -> str:
        """The match with most characters hidden, safe to show in reports."""
        return mask(self.text)


# --- masking -----------------------------------------------------------------------------


def mask(s: str) -> str:
    """Hide most characters of a piece of PII so it can be quoted in a report.

    Separators stay so the shape remains recognisable. An email keeps the first character of
    its local part and its domain (`j***@example.com`); anything else keeps about a quarter of
    its letters and digits, at most four and taken from the end, as card receipts do
    (`**** **** **** 1111`). Strings of four or fewer letters and digits are hidden entirely.

    Args:
        s: The text to mask, usually `PiiMatch.text`.

    Returns:
        The masked text.
    """
    if "@" in s:
        local, _, domain = s.rpartition("@")
        return f"{local[:1]}***@{domain}" if local else f"***@{domain}"
    alnum = sum(ch.isalnum() for ch in s)
    keep = min(4, alnum // 4) if alnum > 4 else 0
    out: list[str] = []
    seen = 0
    for ch in s:
        if ch.isalnum():
            seen += 1
            out.append(ch if seen > alnum - keep else "*")
        else:
            out.append(ch)
    return "".join(out)


# --- context -----------------------------------------------------------------------------

# Labels that make a nearby number something other than personal data.
_NOT_PII_LABEL = re.compile(
    r"(?<![^\W\d_])(?:order|invoice|receipt|ref(?:erence)?|ticket|case|tracking|shipment|"
    r"parcel|sku|part|model|serial|item|product|article|isbn|issn|ean|upc|gtin|imei|doi|patent|"
    r"version|ver|build|release|v|section|sec|chapter|clause|paragraph|step|figure|fig|"
    r"table|appendix|rfc|§|#)"
    r"[\s.:#-]*(?:no\.?|nr\.?|number|#)?[\s.:#-]*$",
    re.IGNORECASE,
)
# Labels that make a nearby number a phone number even in an ambiguous shape.
_PHONE_LABEL = re.compile(
    r"(?<![^\W\d_])(?:phone|telephone|tel|mobile|mob|cell|fax|call|dial|sms|whatsapp|contact|"
    r"hotline|helpline|telefon|handy|mobil|tél|téléphone|portable|teléfono|telefono|"
    r"móvil|cellulare|telefone|celular)\b[^0-9+()]{0,12}$",
    re.IGNORECASE,
)
_SSN_LABEL = re.compile(
    r"(?<![^\W\d_])(?:ssn|ss#|social\s+security(?:\s+(?:number|no\.?|#))?)[\s.:#-]*$",
    re.IGNORECASE,
)
_CONTEXT = 30  # characters before a candidate that are searched for a label


def _before(text: str, start: int) -> str:
    return text[max(0, start - _CONTEXT) : start]


def _has_phone_label(text: str, start: int) -> bool:
    return bool(_PHONE_LABEL.search(_before(text, start)))


def _has_non_pii_label(text: str, start: int) -> bool:
    return bool(_NOT_PII_LABEL.search(_before(text, start)))


def _scan_numbers(
    pattern: re.Pattern[str], text: str, accept: Callable[[str, str, int], bool]
) -> Iterator[tuple[int, str]]:
    """Yield `(start, text)` of accepted digit runs, trying shorter runs where one fails.

    Space-separated groups greedily join numbers that merely stand next to each other
    ("555-234-5678 555-234-5679"). When a run fails validation, its part before the first
    space is tried too, which splits such pairs. Shorter cuts are not tried, and scanning
    goes on after the run: cutting or restarting inside long space-separated runs (tables,
    hex dumps, a bad IBAN's tail) mostly finds digits that happen to fit a pattern.
    """
    pos = 0
    while (m := pattern.search(text, pos)) is not None:
        raw = m.group()
        if not accept(text, raw, m.start()):
            head = raw.split(" ", 1)[0]
            raw = head if head != raw and accept(text, head, m.start()) else ""
        if raw:
            yield m.start(), raw
            pos = m.start() + len(raw)
        else:
            pos = m.end()


# --- email -------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])"
    # Only the characters real addresses use: the RFC also allows quotes, slashes and braces,
    # which here would pull surrounding punctuation into the match.
    r"(?P<local>[\w%+-]+(?:\.[\w%+-]+)*)"
    r"@(?P<domain>(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63})"
    # `git@github.com:owner/repo` is an SSH remote, not a mailbox.
    r"(?![\w-]|\.\w|:[\w~/])"
)
# `icon@2x.png` names an image, and no top-level domain is a file extension like these.
_FILE_EXTENSIONS = frozenset(
    "png jpg jpeg gif svg webp bmp tif tiff ico heic avif pdf txt csv json yaml yml xml html "
    "htm js mjs ts tsx jsx css scss map wasm zip gz tar".split()
)


def _find_emails(text: str) -> Iterable[PiiMatch]:
    for m in _EMAIL.finditer(text):
        tld = m.group("domain").rsplit(".", 1)[-1].lower()
        if tld in _FILE_EXTENSIONS or len(m.group("local")) > 64:
            continue
        yield PiiMatch("email", m.start(), m.end(), m.group())


# --- credit cards ------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.,/-])[0-9](?:[ -]?[0-9]){12,18}(?![\w/]|[.,-][0-9])")
# Issuer prefixes and the lengths each network issues. A number that passes Luhn by chance
# (one in ten do) rarely also has a real prefix and length: EAN-13 barcodes starting with 4
# are not Visa numbers because Visa no longer issues 13 digits.
_CARD_NETWORKS: tuple[tuple[re.Pattern[str], range], ...] = (
    (re.compile(r"4"), range(16, 20, 3)),  # Visa: 16 or 19
    (re.compile(r"5[1-5]|2(?:22[1-9]|2[3-9][0-9]|[3-6][0-9]{2}|7[01][0-9]|720)"), range(16, 17)),
    (re.compile(r"3[47]"), range(15, 16)),  # American Express
    (re.compile(r"3(?:0[0-59]|[689])"), range(14, 20)),  # Diners Club
    (re.compile(r"35(?:2[89]|[3-8][0-9])"), range(16, 20)),  # JCB
    (re.compile(r"6(?:011|4[4-9]|5)"), range(16, 20)),  # Discover
    (re.compile(r"62"), range(16, 20)),  # UnionPay
    (re.compile(r"5[06-8]|6[37]"), range(13, 20)),  # Maestro
)


def _card_network_ok(digits: str) -> bool:
    return any(
        prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS
    )


def luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn (mod 10) checksum used by card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_ok(text: str, raw: str, start: int) -> bool:
    separators = {ch for ch in raw if not ch.isdigit()}
    if len(separators) > 1:
        return False
    # Printed card numbers come in groups of 4 (or Amex's 4-6-5); digits split arbitrarily
    # are more likely a list of numbers.
    if separators and any(not 3 <= len(g) <= 6 for g in re.split(r"[ -]", raw)):
        return False
    digits = re.sub(r"[^0-9]", "", raw)
    # Unbroken runs of other lengths are mostly IDs and 64-bit integers (seeds, snowflake
    # IDs have 17-19 digits); cards of those lengths are only recognised when grouped.
    if not separators and len(digits) not in (15, 16):
        return False
    if len(set(digits)) == 1 or not _card_network_ok(digits) or not luhn_valid(digits):
        return False
    return not (_has_non_pii_label(text, start) or _has_phone_label(text, start))


def _find_cards(text: str) -> Iterable[PiiMatch]:
    for start, raw in _scan_numbers(_CARD, text, _card_ok):
        yield PiiMatch("credit_card", start, start + len(raw), raw)


# --- US social security numbers ----------------------------------------------------------

_SSN = re.compile(
    r"(?<![\w.,/+-])(?P<area>[0-9]{3})(?P<sep>[- ]?)(?P<group>[0-9]{2})(?P=sep)"
    r"(?P<serial>[0-9]{4})(?![\w/]|[.,-][0-9])"
)
# Numbers the SSA voided after they were printed on sample cards and widely misused.
_VOID_SSNS = frozenset({"078051120", "219099999"})


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """Whether the parts of an SSN can be issued (area not 000/666/9xx, no zero group/serial)."""
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
        and area + group + serial not in _VOID_SSNS
    )


def _find_ssns(text: str) -> Iterable[PiiMatch]:
    for m in _SSN.finditer(text):
        if not ssn_valid(m.group("area"), m.group("group"), m.group("serial")):
            continue
        # Nine plain digits are far more often an ID or amount than an SSN: need a label.
        labelled = bool(_SSN_LABEL.search(_before(text, m.start())))
        if not m.group("sep") and not labelled:
            continue
        if not labelled and (
            _has_non_pii_label(text, m.start()) or _has_phone_label(text, m.start())
        ):
            continue
        yield PiiMatch("ssn", m.start(), m.end(), m.group())


# --- IBAN --------------------------------------------------------------------------------

# Total IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip

# Printed IBANs come in groups of four separated by single spaces; electronic ones unbroken.
_IBAN = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]{4}){2,7}(?:[ ]?[A-Za-z0-9]{1,4})?"
    r"(?![A-Za-z0-9])"
)


def iban_valid(iban: str) -> bool:
    """Whether a compact IBAN (no spaces) has its country's length and a valid mod-97 check."""
    iban = iban.upper()
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban):
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    # Unlisted countries are accepted on the checksum alone, so new registrations still count.
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _find_ibans(text: str) -> Iterable[PiiMatch]:
    for m in _IBAN.finditer(text):
        raw = m.group()
        # The grouped pattern can swallow a following four-letter word ("... 7034 BANK");
        # drop trailing groups until the rest validates.
        while len(raw.replace(" ", "")) >= 15:
            if iban_valid(raw.replace(" ", "")):
                yield PiiMatch("iban", m.start(), m.start() + len(raw), raw)
                break
            if " " not in raw:
                break
            raw = raw.rsplit(" ", 1)[0]


# --- IP addresses ------------------------------------------------------------------------

_IPV4 = re.compile(
    r"(?<![\w.:])(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?![\w:]|\.[0-9])"
)
_IPV6 = re.compile(
    r"(?<![\w:.])"
    r"(?:[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
    r"(?:(?<=:)(?:[0-9]{1,3}\.){3}[0-9]{1,3})?)"
    r"(?:%[0-9A-Za-z._-]+)?"
    r"(?![\w:]|\.[0-9])"
)


def _is_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """False for values that are not a host's address, or more likely a version number."""
    if ip.is_unspecified or ip.is_loopback:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        octets = ip.packed
        # 0.x.x.x is "this network", never a host. A small first octet with small others
        # (2.7.2.3, 1.7.12.1, 3.2.2.10) is a version or section number far more often than
        # an address: by chance one address in 2,000 has that shape, and the known ones
        # are public resolvers (1.1.1.1, 8.8.8.8), not personal data.
        if octets[0] == 0 or (octets[0] < 10 and max(octets[1:]) < 20):
            return False
        value = int(ip)
        # A run of ones then zeros (255.255.255.0, 255.255.0.0 ...) is a netmask.
        inverted = ~value & 0xFFFFFFFF
        if value and (inverted & (inverted + 1)) == 0:
            return False
    return True


def _find_ips(text: str) -> Iterable[PiiMatch]:
    for m in _IPV4.finditer(text):
        if _has_non_pii_label(text, m.start()):
            continue
        if _is_address(ipaddress.IPv4Address(m.group())):
            yield PiiMatch("ip_address", m.start(), m.end(), m.group())
    for m in _IPV6.finditer(text):
        raw = m.group()
        # A sentence may end in a colon right after the address ("fe80::1: reachable").
        candidates = [raw, raw[:-1]] if raw.endswith(":") and not raw.endswith("::") else [raw]
        for candidate in candidates:
            address = candidate.split("%", 1)[0]
            # Slices (`x[1::2]`, `a[100::200]`) and C++ scopes (`fac::bad`) parse as IPv6.
            # Addresses in use have a digit and three groups, or a full four-digit group
            # (fe80::1); a trailing "::" is a network prefix (or reST's literal marker).
            groups = [g for g in re.split(r"[:.]", address) if g]
            if (
                address.endswith("::")
                or not any(ch.isdigit() for ch in address)
                or not (len(groups) >= 3 or any(len(g) == 4 for g in groups))
            ):
                continue
            try:
                ip = ipaddress.IPv6Address(address)
            except ValueError:
                continue
            if _is_address(ip):
                yield PiiMatch("ip_address", m.start(), m.start() + len(candidate), candidate)
            break


# --- phone numbers -----------------------------------------------------------------------

# Digits in groups with single separators, optionally led by + or 00 and with a bracketed
# area code. The lookarounds keep it from starting or ending inside a longer number or word.
_PHONE = re.compile(
    r"(?<![\w+./,:-])"
    r"(?:\+|\b00)?"
    r"(?:\([0-9]{1,5}\)[ .-]?|[0-9]{1,5}[ ./-]?\([0-9]{1,5}\)[ .-]?)?"
    r"[0-9]{1,15}(?:[ ./-][0-9]{1,8}){0,6}"
    # Not followed by more digits, a unit or a currency: "1 234 567 €" is an amount.
    r"(?![\w%€$£¥]|[.,/:-][0-9]| (?:[%€$£¥]|(?:usd|eur|gbp|chf|km|kg|mb|gb)\b))",
    re.IGNORECASE,
)
# North American 3-3-4. The area code cannot start with 0 or 1; the exchange rule (no
# leading 0/1) is not enforced because made-up but realistic numbers like 555-123-4567 are
# exactly what generated text contains.
_NANP = re.compile(r"(?:1[ .-]?)?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}")
_DATE_LIKE = re.compile(
    r"(?:[0-9]{4}[./-][0-9]{1,2}[./-][0-9]{1,2}|[0-9]{1,2}[./-][0-9]{1,2}[./-][0-9]{2,4})"
    r"(?:[ T][0-9]{1,2}[:.][0-9]{2})?"
)


# Year ranges (2020-2023), the SSN shape (078-05-1120) and US ZIP+4 codes (02110-1301).
_NOT_PHONE_SHAPE = re.compile(r"[0-9]{4}-[0-9]{4}|[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{5}-[0-9]{4}")


def _phone_digits_ok(raw: str, digits: str) -> bool:
    """Whether the digits and their grouping look like a dialled phone number."""
    groups = [g for g in re.split(r"[^0-9]+", raw) if g]
    if raw.startswith("+"):
        # E.164: country code then subscriber number, 15 digits at most. Unbroken, it needs
        # 11 digits, so signed integers such as +2147483647 do not count.
        shortest = 8 if len(groups) > 1 else 11
        return shortest <= len(digits) <= 15 and digits[0] != "0"
    if raw.startswith("00"):
        national = digits[2:]
        return 8 <= len(national) <= 15 and national[0] != "0" and len(groups) >= 2
    if _NANP.fullmatch(raw):
        return True
    if digits.startswith("0") and 9 <= len(digits) <= 12 and len(groups) >= 2:
        # National format with a trunk prefix: 020 7946 0958, 030/1234567, 01 23 45 67 89.
        return 2 <= len(groups[0]) <= 5 and all(len(g) >= 2 for g in groups)
    return False


def _phone_ok(text: str, raw: str, start: int) -> bool:
    digits = re.sub(r"[^0-9]", "", raw)
    if not 7 <= len(digits) <= 17:
        return False
    if _DATE_LIKE.fullmatch(raw.lstrip("+")) or _NOT_PHONE_SHAPE.fullmatch(raw):
        return False
    labelled = _has_phone_label(text, start)
    if not labelled and _has_non_pii_label(text, start):
        return False
    # A label ("Tel.", "call") vouches for shapes that are otherwise too ambiguous, such as
    # 912 345 678 or 5551234567.
    return _phone_digits_ok(raw, digits) or (labelled and len(digits) <= 15)


def _find_phones(text: str) -> Iterable[PiiMatch]:
    for start, raw in _scan_numbers(_PHONE, text, _phone_ok):
        yield PiiMatch("phone", start, start + len(raw), raw)


# --- public API --------------------------------------------------------------------------

_FINDERS = {
    "email": _find_emails,
    "iban": _find_ibans,
    "credit_card": _find_cards,
    "ssn": _find_ssns,
    "ip_address": _find_ips,
    "phone": _find_phones,
}


def find_pii(text: str, kinds: Iterable[str] = PII_KINDS) -> list[PiiMatch]:
    """Find personal data in a text.

    Args:
        text: Any text.
        kinds: Which kinds to report, out of `PII_KINDS`.

    Returns:
        Non-overlapping matches of the requested kinds, in order of position.

    Raises:
        ValueError: If `kinds` names an unknown kind.
    """
    wanted = set(kinds)
    unknown = wanted - set(PII_KINDS)
    if unknown:
        raise ValueError(
            f"unknown PII kind(s) {', '.join(sorted(unknown))}; use {', '.join(PII_KINDS)}"
        )
    if not wanted or not text:
        return []
    candidates = [match for finder in _FINDERS.values() for match in finder(text)]
    candidates.sort(key=lambda c: (_PRIORITY[c.kind], c.start, -(c.end - c.start)))
    accepted: list[PiiMatch] = []
    for candidate in candidates:
        if all(candidate.end <= a.start or candidate.start >= a.end for a in accepted):
            accepted.append(candidate)
    return sorted((a for a in accepted if a.kind in wanted), key=lambda a: a.start)
