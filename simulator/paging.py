"""Offset cursors as OpenMetadata's time-series lists use them, decoded with Java's exact failures.

`testCaseIncidentStatus` pages by offset, but the offset travels as an opaque cursor: the server answers
`paging.after = RestUtil.encodeCursor(String.valueOf(offset + limit))` (URL-safe base64, padded) and reads it
back with `Integer.parseInt(RestUtil.decodeCursor(offset))`. A plain number is not a cursor: `0` fails Java's
base64 decoder and `500` decodes to bytes that are not digits, so both answer 400 with Java's own message
(an `IllegalArgumentException`, which `CatalogGenericExceptionMapper` turns into a 400).
"""

from __future__ import annotations

import base64

from simulator.records import SimError

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
INT_MAX = 2**31 - 1


def encode_cursor(text: str) -> str:
    """`RestUtil.encodeCursor`: URL-safe base64 with padding, of the UTF-8 text."""
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")


def java_url_b64decode(text: str) -> bytes:
    """`Base64.getUrlDecoder().decode(text)`, raising `ValueError` with the JDK's message where it would."""
    bits = 0
    shift = 18
    out = bytearray()
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        i += 1
        if ch == "=":
            # "=" ends the input: legal after a 3-character unit, or as "==" after a 2-character one
            if shift == 18 or (shift == 6 and (i == n or text[i] != "=")):
                raise ValueError("Input byte array has wrong 4-byte ending unit")
            if shift == 6:
                i += 1
            break
        value = _INDEX.get(ch)
        if value is None:
            code = ord(ch) if ord(ch) < 256 else 0x3F  # the JDK reads the text as ISO-8859-1 bytes
            signed = code - 256 if code >= 128 else code
            raise ValueError(f"Illegal base64 character {'-' if signed < 0 else ''}{abs(signed):x}")
        bits |= value << shift
        shift -= 6
        if shift < 0:
            out += bytes(((bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF))
            shift, bits = 18, 0
    if shift == 6:
        out.append((bits >> 16) & 0xFF)
    elif shift == 0:
        out += bytes(((bits >> 16) & 0xFF, (bits >> 8) & 0xFF))
    elif shift == 12:
        raise ValueError("Last unit does not have enough valid bits")
    if i < n:
        raise ValueError(f"Input byte array has incorrect ending byte at {i}")
    return bytes(out)


def java_parse_int(text: str) -> int:
    """`Integer.parseInt(text)` (radix 10), raising `ValueError` with the JDK's NumberFormatException message."""
    error = ValueError(f'For input string: "{text}"')
    body = text[1:] if text[:1] in ("+", "-") else text
    if not body or not all("0" <= c <= "9" for c in body):
        raise error
    value = int(text)
    if not -(2**31) <= value <= INT_MAX:
        raise error
    return value


def decode_offset(cursor: str | None) -> int:
    """The offset inside an incident-list cursor (0 when absent); 400 with Java's message when it is not one."""
    if cursor is None:
        return 0
    try:
        value = java_parse_int(java_url_b64decode(cursor).decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise SimError(400, str(exc)) from exc
    if value < 0:  # the real server fails deeper (a negative subList index); a 400 is the kinder stand-in
        raise SimError(400, f"offset must be greater than or equal to 0, got {value}")
    return value


def offset_paging(offset: int, limit: int, total: int) -> dict[str, object]:
    """`EntityTimeSeriesRepository.listWithOffset` paging: `before` when not at the start, `after` until the end."""
    paging: dict[str, object] = {}
    if offset > 0:
        paging["before"] = encode_cursor(str(max(0, offset - limit)))
    if offset + limit < total:
        paging["after"] = encode_cursor(str(offset + limit))
    paging["total"] = total
    return paging
