"""Range and conditional requests on stored objects, as RFC 9110 sections 13 and 14 say.

- ``Range`` with a unit other than ``bytes``, or a syntactically invalid range set (``bytes=5-2``,
  ``bytes=x``), is ignored: the whole object is served (200), never a 400;
- a valid set none of whose ranges is satisfiable is 416 with ``Content-Range: bytes */SIZE``;
- ``If-None-Match`` is compared weakly, and ``*`` matches any existing object (304 for GET/HEAD).
"""

from __future__ import annotations

import re

from starlette.responses import FileResponse

_SPEC = re.compile(r"(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """A valid Range header none of whose ranges falls inside the object."""

    def __init__(self, size: int) -> None:
        super().__init__(f"no requested range starts inside the object's {size} bytes")
        self.size = size


def satisfiable_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The ``(start, end_exclusive)`` ranges to serve, merged and sorted; None to ignore the header.

    Raises RangeNotSatisfiable when the header is valid but no range is satisfiable.
    """
    if header is None:
        return None
    unit, equals, spec_set = header.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None  # an unknown unit is ignored (RFC 9110 14.2)
    specs = [spec.strip() for spec in spec_set.split(",")]
    ranges: list[tuple[int, int]] = []
    for spec in specs:
        if not spec:
            continue  # empty list elements are allowed by the list syntax
        match = _SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first:
            start = int(first)
            if last and int(last) < start:
                return None  # first > last makes the whole set invalid: ignored (14.1.1)
            if start < size:
                ranges.append((start, min(size, int(last) + 1) if last else size))
        elif last:
            suffix = int(last)
            if suffix > 0 and size > 0:
                ranges.append((max(0, size - suffix), size))
        else:
            return None  # "-" alone
    if not any(spec for spec in specs):
        return None
    if not ranges:
        raise RangeNotSatisfiable(size)
    ranges.sort()
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        if start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def none_match(header: str | None, etag: str) -> bool:
    """True when ``If-None-Match`` matches ``etag`` (weak comparison; ``*`` matches any current object)."""
    if header is None:
        return False
    opaque = etag.removeprefix("W/")
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == opaque:
            return True
    return False


class ObjectResponse(FileResponse):
    """Starlette's FileResponse with the range rules above (it answers 400 where RFC 9110 says ignore)."""

    @classmethod
    def _parse_range_header(cls, http_range: str, file_size: int) -> list[tuple[int, int]]:
        try:
            ranges = satisfiable_ranges(http_range, file_size)
        except RangeNotSatisfiable:
            ranges = None  # the endpoint answered 416 before; never reached
        if ranges is None or len(ranges) > cls.max_ranges:
            return []  # FileResponse then serves the whole file
        return ranges
