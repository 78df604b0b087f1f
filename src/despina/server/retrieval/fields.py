"""Request checking shared by the retrieval endpoints: JSON field access and the filters,
lineage, step ranges and orders several endpoints accept, each answering 400 naming the field."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from despina.query.catalog import compile_name_filter, literal_names
from despina.query.lineage import LINEAGE_EXPERIMENT, LINEAGE_FULL, LINEAGE_OWN
from despina.query.points import step_bound
from despina.server.encode import WIRE_TYPES
from despina.server.errors import bad_request, parse_json_body
from despina.userregex import InvalidPattern

__all__ = [
    "KNOWN_WIRE_TYPES",
    "MAX_PAGE",
    "MAX_SERIES",
    "MAX_STEP_MICRO",
    "PROTOBUF",
    "PYTHON_TYPES",
    "count",
    "field",
    "finite",
    "json_body",
    "lineage_mode",
    "name_filter",
    "number",
    "order",
    "protobuf",
    "series_request",
    "series_requests",
    "show",
    "step_range",
    "strings",
    "type_filter",
]

PROTOBUF = "application/x-protobuf"
MAX_PAGE = 10_000
MAX_SERIES = 10_000
MAX_STEP_MICRO = 2**62
PYTHON_TYPES = {wire: name for name, wire in WIRE_TYPES.items()}
KNOWN_WIRE_TYPES = set(PYTHON_TYPES) | {"experimentState", "complex", "gitRef"}


# -- JSON field access ---------------------------------------------------------------------------


def json_body(body: bytes) -> dict[str, Any]:
    data = parse_json_body(body) if body else {}
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(data).__name__}")
    return data


def field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[key]`` if present and of ``kind`` (None when absent or null)."""
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise bad_request(f"{where}.{key} must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise bad_request(f"{where}.{key} must be {_kind_name(kind)}, got {show(value)}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))


def show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def number(data: dict[str, Any], key: str, where: str) -> float | None:
    value = field(data, key, (int, float), where)
    if value is None:
        return None
    if not finite(value):
        raise bad_request(f"{where}.{key} must be a finite number, got {show(value)}")
    return float(value)


def finite(value: float) -> bool:
    """Finite and within the float range (a JSON integer may hold hundreds of digits)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def count(data: dict[str, Any], key: str, where: str, default: int, maximum: int) -> int:
    value = number(data, key, where)
    if value is None:
        return default
    if value < 0:
        raise bad_request(f"{where}.{key} must not be negative, got {value:g}")
    return min(int(value), maximum)


def strings(data: dict[str, Any], key: str, where: str) -> list[str] | None:
    value = field(data, key, list, where)
    if value is None:
        return None
    for item in value:
        if not isinstance(item, str):
            raise bad_request(f"{where}.{key} must hold strings, got {show(item)}")
    return value


def protobuf(message: Any) -> Response:
    return Response(message.SerializeToString(), media_type=PROTOBUF)


# -- shared parsing ------------------------------------------------------------------------------


def type_filter(data: dict[str, Any], where: str) -> set[str] | None:
    items = field(data, "attributeFilter", list, where)
    if items is None:
        return None
    types: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            raise bad_request(f"{where}.attributeFilter must hold objects, got {show(item)}")
        wire = item.get("attributeType")
        if not isinstance(wire, str) or wire not in KNOWN_WIRE_TYPES:
            raise bad_request(
                f"{where}.attributeFilter: unknown attributeType {show(wire)}; expected one of "
                f"{', '.join(sorted(KNOWN_WIRE_TYPES))}"
            )
        if wire in PYTHON_TYPES:
            types.add(PYTHON_TYPES[wire])
    return types


def name_filter(
    data: dict[str, Any], where: str
) -> tuple[Callable[[str], bool] | None, list[str] | None, bool]:
    """``(predicate, exact names, matches nothing)`` of ``attributeNameFilter``.

    Raises:
        ApiError: a pattern RE2 refuses (400, naming its field, e.g.
            ``definitions.attributeNameFilter.mustMatchAny[0].mustMatchRegexes[1]``).
    """
    spec = field(data, "attributeNameFilter", dict, where)
    regex = field(data, "attributeNameRegex", str, where)
    alternatives: list[tuple[list[str], list[str]]] = []
    sources: list[tuple[str, str]] = []  # (pattern, where it came from), for error messages
    if spec is not None and "mustMatchAny" in spec and spec["mustMatchAny"] is not None:
        items = spec["mustMatchAny"]
        if not isinstance(items, list):
            raise bad_request(f"{where}.attributeNameFilter.mustMatchAny must be a list")
        if not items:
            return None, None, True
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise bad_request(f"{where}.attributeNameFilter.mustMatchAny must hold objects")
            must = strings(item, "mustMatchRegexes", f"{where}.attributeNameFilter") or []
            must_not = strings(item, "mustNotMatchRegexes", f"{where}.attributeNameFilter") or []
            alternatives.append((must, must_not))
            at = f"{where}.attributeNameFilter.mustMatchAny[{i}]"
            sources.extend((p, f"{at}.mustMatchRegexes[{j}]") for j, p in enumerate(must))
            sources.extend((p, f"{at}.mustNotMatchRegexes[{j}]") for j, p in enumerate(must_not))
    if regex is not None:
        sources.append((regex, f"{where}.attributeNameRegex"))
        alternatives = [([*must, regex], must_not) for must, must_not in alternatives] or [
            ([regex], [])
        ]
    if not alternatives:
        return None, None, False
    exact = None
    if len(alternatives) == 1 and not alternatives[0][1]:
        exact = literal_names(alternatives[0][0])
    try:
        predicate = compile_name_filter(alternatives)
    except InvalidPattern as exc:  # RE2 syntax, length or size: name the field it came from
        at = next((f for p, f in sources if p == exc.pattern), f"{where}.attributeNameFilter")
        raise bad_request(f"{at}: {exc}") from None
    return predicate, exact, False


def lineage_mode(lineage: object, entity: object, where: str) -> str:
    if lineage in (None, "FULL", 0):
        return LINEAGE_FULL
    if lineage in ("NONE", "ONLY_OWNED", 1):
        if entity in ("RUN", 1):
            return LINEAGE_OWN
        if entity in (None, "EXPERIMENT", 0):
            return LINEAGE_EXPERIMENT
        raise bad_request(
            f"{where}.lineageEntityType must be EXPERIMENT or RUN, got {show(entity)}"
        )
    raise bad_request(f"{where}.lineage must be FULL or NONE, got {show(lineage)}")


def step_range(data: dict[str, Any], where: str) -> tuple[int, int]:
    spec = field(data, "stepRange", dict, where)
    lo, hi = -1, MAX_STEP_MICRO
    if spec is not None:
        start = number(spec, "from", f"{where}.stepRange")
        end = number(spec, "to", f"{where}.stepRange")
        if start is not None:
            lo = max(lo, step_bound(start, lower=True))
        if end is not None:
            hi = min(hi, step_bound(end, lower=False))
    return lo, hi


def order(data: dict[str, Any], where: str, default: str) -> bool:
    """Whether ``data.order`` asks for descending steps."""
    value = field(data, "order", str, where) or default
    if value not in ("ascending", "descending"):
        raise bad_request(f"{where}.order must be 'ascending' or 'descending', got {value!r}")
    return value == "descending"


def series_requests(data: dict[str, Any], where: str) -> list[Any]:
    """The ``requests`` list of a series read, at most :data:`MAX_SERIES` of them.

    Raises:
        ApiError: 400 when it is not a list or holds more than :data:`MAX_SERIES`.
    """
    requests = field(data, "requests", list, where) or []
    if len(requests) > MAX_SERIES:
        raise bad_request(f"{where}: {len(requests)} series in one request; at most {MAX_SERIES}")
    return requests


def series_request(request: Any, at: str) -> tuple[str, dict[str, Any], str, str, str]:
    """``(requestId, series, holder identifier, attribute, lineage mode)`` of one series
    request, checked.

    Raises:
        ApiError: a missing or ill-typed field (400).
    """
    if not isinstance(request, dict):
        raise bad_request(f"{at} must be an object, got {show(request)}")
    request_id = field(request, "requestId", str, at)
    series = field(request, "series", dict, at)
    if request_id is None or series is None:
        raise bad_request(f"{at} needs requestId and series")
    holder = field(series, "holder", dict, f"{at}.series") or {}
    identifier = field(holder, "identifier", str, f"{at}.series.holder")
    attribute = field(series, "attribute", str, f"{at}.series")
    if identifier is None or attribute is None:
        raise bad_request(f"{at}.series needs holder.identifier and attribute")
    mode = lineage_mode(series.get("lineage"), series.get("lineageEntityType"), at)
    return request_id, series, identifier, attribute, mode
