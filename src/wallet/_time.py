"""Timestamps in requests: RFC 3339, with an offset, read exactly.

Python's `datetime.fromisoformat` alone reads far more than RFC 3339 (no offset, week dates,
ordinal dates, a bare date), and pydantic's datetime more still (Unix seconds as numbers or
text); a timestamp that a client may have meant in another zone, or as another instant, is
refused instead of guessed at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# date-time of RFC 3339 section 5.6: full-date "T" full-time, time-offset Z or +-hh:mm; T and Z
# in either case; fractions of a second to any length (kept to the microsecond).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


UTC_RANGE = "0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999Z"


def parse_timestamp(value: object) -> datetime:
    """The instant an RFC 3339 date-time names, timezone-aware; ValueError when `value` is not
    one (not text, no offset, no such date or time). A leap second (:60) is refused."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time text such as 2030-01-31T23:59:59Z")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, such as 2030-01-31T23:59:59Z")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = (fraction or "")[:6].ljust(6, "0")
    zone = "+00:00" if offset in ("Z", "z") else offset
    if not (int(zone[1:3]) <= 23 and int(zone[4:6]) <= 59):
        raise ValueError("has an offset out of range")
    try:
        parsed = datetime.fromisoformat(f"{year}-{month}-{day}T{hour}:{minute}:{second}.{micro}{zone}")
    except ValueError:
        raise ValueError("is not a valid date and time") from None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00, 9999-12-31T23:00:00-01:00: valid, yet no UTC datetime
        raise ValueError(f"is outside the instants this service handles ({UTC_RANGE})") from None


def years_later(moment: datetime, years: int) -> datetime:
    """The same date and time `years` later (February 29 becomes February 28)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)
