"""Argument resolution and validation of the query API (spec/query-api.md §2.2, §3, §4, §6).

Everything here runs before any data access, in the reference's order: project, then the
container and attribute arguments, then the parameters. Type inference (§6) needs the store;
it takes a ``lookup`` callable that returns the project-wide types of attribute names.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from despina.query.exceptions import (
    AttributeTypeInferenceError,
    NeptuneProjectNotProvided,
    NeptuneUnexpectedResponseError,
    NeptuneUserError,
)
from despina.query.filters import (
    Attribute,
    AttributeFilter,
    BaseAttributeFilter,
    Filter,
    any_of,
    parse_ers,
)
from despina.query.warnings import AttributeWarning
from despina.userregex import InvalidPattern, UserRegex, compile_user_regex

__all__ = [
    "EXPERIMENTS",
    "FETCH_SERIES_TYPES",
    "KNOWN_SYS_TYPES",
    "RUNS",
    "Kind",
    "Selector",
    "default_project",
    "ensure_types_provided",
    "infer_filter_types",
    "infer_sort_type",
    "resolve_attributes",
    "resolve_containers",
    "resolve_project",
    "resolve_sort_by",
    "restrict_types",
    "validate_bucket_limit",
    "validate_include_time",
    "validate_limit",
    "validate_sort_direction",
    "validate_step_range",
    "validate_tail_limit",
    "validate_x",
]


@dataclass(frozen=True, slots=True)
class Kind:
    """Which containers an API works on: experiment heads or all runs (§2.1)."""

    name: Literal["experiment", "run"]
    argument: str
    """The keyword of the container argument (``experiments`` / ``runs``)."""
    label_attribute: str
    """The attribute whose value labels rows (``sys/name`` / ``sys/custom_run_id``)."""


EXPERIMENTS = Kind("experiment", "experiments", "sys/name")
RUNS = Kind("run", "runs", "sys/custom_run_id")

FETCH_SERIES_TYPES = ("string_series", "file_series", "histogram_series")
"""The types ``fetch_series`` accepts, in the order its error message names them."""

_COUNT_KINDS = (
    "bool",
    "file_ref",
    "file_ref_series",
    "float",
    "float_series",
    "histogram",
    "histogram_series",
    "int",
    "string",
    "string_series",
    "string_set",
    "total",
)
KNOWN_SYS_TYPES: dict[str, str] = {
    **dict.fromkeys(
        ("sys/archived", "sys/failed", "sys/trashed", "sys/experiment/is_head"), "bool"
    ),
    **dict.fromkeys(("sys/creation_time", "sys/modification_time", "sys/ping_time"), "datetime"),
    **dict.fromkeys(
        (
            "sys/custom_run_id",
            "sys/description",
            "sys/diagnostics/project_uuid",
            "sys/diagnostics/run_uuid",
            "sys/experiment/name",
            "sys/family",
            "sys/id",
            "sys/name",
            "sys/owner",
        ),
        "string",
    ),
    **{f"sys/diagnostics/attributes/{kind}_count": "int" for kind in _COUNT_KINDS},
    **dict.fromkeys(
        (
            "sys/diagnostics/attributes/total_series_datapoints",
            "sys/forking/depth",
            "sys/relative_creation_time_ms",
            "sys/size",
        ),
        "int",
    ),
    **dict.fromkeys(("sys/experiment/running_time_seconds", "sys/running_time_seconds"), "float"),
    **dict.fromkeys(("sys/group_tags", "sys/tags"), "string_set"),
}
"""System attributes typed without a lookup (§6 step 2)."""

_PROJECT_ENV = ("DESPINA_PROJECT", "NEPTUNE_PROJECT")


def default_project() -> str | None:
    """The project named by ``DESPINA_PROJECT`` or else ``NEPTUNE_PROJECT`` (read at import)."""
    for name in _PROJECT_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_project(project: str | None, default: str | None) -> str:
    """``project`` if truthy, else the import-time default (§2.2).

    Raises:
        NeptuneProjectNotProvided: neither is set.
    """
    chosen = project or default
    if not chosen:
        raise NeptuneProjectNotProvided()
    return chosen


def resolve_containers(value: Any, kind: Kind) -> Filter | None:
    """The filter meant by an ``experiments=`` / ``runs=`` argument (§3.1).

    Raises:
        ValueError: an empty list or a value of another type.
    """
    label = Attribute(kind.label_attribute, type="string")
    if value is None:
        return None
    if isinstance(value, str):
        return Filter.matches(label, value)
    if isinstance(value, list) and not value:
        raise ValueError(
            f"Invalid type for `{kind.argument}` filter. Expected str, non-empty list of str, or "
            "Filter object, but got an empty list"
        )
    if isinstance(value, list):
        return any_of([Filter.eq(label, name) for name in value])
    if isinstance(value, Filter):
        return value
    raise ValueError(
        f"Invalid type for `{kind.argument}` filter. Expected str, non-empty list of str, or "
        f"Filter object, but got {type(value)}."
    )


def resolve_attributes(value: Any) -> BaseAttributeFilter:
    """The attribute filter meant by an ``attributes=`` (or ``y=``) argument (§3.2).

    Raises:
        ValueError: a value of another type.
    """
    if value is None:
        return AttributeFilter()
    if isinstance(value, str | list):
        return AttributeFilter(name=value)
    if isinstance(value, BaseAttributeFilter):
        return value
    raise ValueError(
        "Invalid type for `attributes` filter. Expected str, non-empty list of str, or "
        f"AttributeFilter object, but got {type(value)}."
    )


def resolve_sort_by(value: Any) -> Attribute:
    """``sort_by`` as an :class:`Attribute` (§3.4).

    Raises:
        ValueError: neither a ``str`` nor an ``Attribute``.
    """
    if isinstance(value, str):
        return Attribute(value)
    if isinstance(value, Attribute):
        return Attribute(value.name, value.type)
    raise ValueError(
        f"Invalid type for `sort_by`. Expected str or Attribute object, but got {type(value)}."
    )


# -- attribute selection ----------------------------------------------------------------------

_Alternative = tuple[tuple[str, ...], tuple[str, ...]]


@dataclass(frozen=True)
class _Leaf:
    names: frozenset[str] | None
    alternatives: tuple[_Alternative, ...] | None
    types: frozenset[str]


@dataclass
class Selector:
    """A resolved attribute filter: the union of its leaves, each a name rule and types.

    Regexes are compiled on first use, so an invalid pattern surfaces at data access as
    :class:`NeptuneUnexpectedResponseError`, like the reference's server-side rejection.
    """

    leaves: tuple[_Leaf, ...]
    _compiled: dict[str, UserRegex] = field(default_factory=dict, repr=False)

    @property
    def types(self) -> frozenset[str]:
        """Every type some leaf allows."""
        return frozenset(t for leaf in self.leaves for t in leaf.types)

    def exact_names(self) -> frozenset[str] | None:
        """The names selected when every leaf lists exact names, else ``None``."""
        if any(leaf.names is None for leaf in self.leaves):
            return None
        return frozenset(n for leaf in self.leaves for n in leaf.names or ())

    def _search(self, pattern: str, text: str) -> bool:
        regex = self._compiled.get(pattern)
        if regex is None:
            try:
                regex = compile_user_regex(pattern)
            except InvalidPattern as exc:
                raise NeptuneUnexpectedResponseError(
                    f"invalid regular expression {pattern!r} in an attribute filter: "
                    f"{exc.reason}; escape special characters (e.g. '\\.') or fix the pattern"
                ) from None
            self._compiled[pattern] = regex
        return regex.search(text)

    def accepts(self, path: str, type_: str) -> bool:
        """Whether attribute ``path`` of ``type_`` passes some leaf (§5.4)."""
        for leaf in self.leaves:
            if type_ not in leaf.types:
                continue
            if leaf.names is not None:
                if path in leaf.names:
                    return True
                continue
            if leaf.alternatives is None:
                return True
            for positive, negated in leaf.alternatives:
                if all(self._search(p, path) for p in positive) and not any(
                    self._search(n, path) for n in negated
                ):
                    return True
        return False

    def accepts_name(self, path: str) -> bool:
        """Whether ``path`` passes some leaf with some type."""
        return any(self.accepts(path, t) for t in self.types)

    def accepts_every_name(self) -> bool:
        """Whether some leaf takes any name (no name rule), so no path can be ruled out."""
        return any(leaf.names is None and leaf.alternatives is None for leaf in self.leaves)

    def wanted_paths(self, candidates: Iterable[str]) -> list[str]:
        """The ``candidates`` that some leaf's name rule takes (types aside): the paths a read
        must cover. Each pattern runs once per path, whatever the number of types."""
        wanted = []
        for path in candidates:
            for leaf in self.leaves:
                if not leaf.types:
                    continue
                if leaf.names is not None:
                    if path in leaf.names:
                        break
                    continue
                if leaf.alternatives is None or any(
                    all(self._search(p, path) for p in positive)
                    and not any(self._search(n, path) for n in negated)
                    for positive, negated in leaf.alternatives
                ):
                    break
            else:
                continue
            wanted.append(path)
        return wanted


def restrict_types(attributes: BaseAttributeFilter, allowed: Sequence[str] | None) -> Selector:
    """Narrow every leaf to the ``allowed`` types (§3.3); ``None`` allows all.

    Raises:
        ValueError: a leaf allows none of the ``allowed`` types.
    """
    leaves = []
    for leaf in attributes.leaves():
        types = leaf.types()
        if allowed is not None:
            kept = [t for t in types if t in allowed]
            if not kept:
                if len(allowed) == 1:
                    label = f"{allowed[0]} type is"
                else:
                    label = f"{', '.join(allowed[:-1])} or {allowed[-1]} types are"
                raise ValueError(
                    f"Only {label} supported for attribute filters in this function "
                    f"and the filter contains types: {', '.join(types)}"
                )
            types = kept
        names: frozenset[str] | None = None
        alternatives: tuple[_Alternative, ...] | None = None
        if isinstance(leaf.name, list):
            names = frozenset(leaf.name)
        elif isinstance(leaf.name, str):
            alternatives = tuple(
                (tuple(positive), tuple(negated)) for positive, negated in parse_ers(leaf.name)
            )
        leaves.append(_Leaf(names, alternatives, frozenset(types)))
    return Selector(tuple(leaves))


# -- parameter validation (§3.5) --------------------------------------------------------------


def validate_step_range(step_range: Any) -> None:
    """Raises ValueError unless ``step_range`` is a 2-tuple of ``None`` or numbers, in order."""
    if not isinstance(step_range, tuple) or len(step_range) != 2:
        raise ValueError("step_range must be a tuple of two values")
    start, end = step_range
    if start is not None and not isinstance(start, int | float):
        raise ValueError("step_range start must be None or a number")
    if end is not None and not isinstance(end, int | float):
        raise ValueError("step_range end must be None or a number")
    if start is not None and end is not None and start > end:
        raise ValueError("step_range start must be less than or equal to end")


def _optional_positive_int(value: Any, name: str) -> None:
    if value is not None:
        if not isinstance(value, int):
            raise ValueError(f"{name} must be None or an integer")
        if value <= 0:
            raise ValueError(f"{name} must be greater than 0")


def validate_tail_limit(tail_limit: Any) -> None:
    """Raises ValueError unless ``tail_limit`` is ``None`` or a positive int."""
    _optional_positive_int(tail_limit, "tail_limit")


def validate_limit(limit: Any) -> None:
    """Raises ValueError unless the table ``limit`` is ``None`` or a positive int."""
    _optional_positive_int(limit, "limit")


def validate_include_time(include_time: Any) -> None:
    """Raises ValueError unless ``include_time`` is ``None`` or ``"absolute"``."""
    if include_time is not None and include_time != "absolute":
        raise ValueError("include_time must be 'absolute'")


def validate_bucket_limit(limit: Any) -> None:
    """Raises ValueError unless the bucket ``limit`` is an int in [1, 1000]."""
    if not isinstance(limit, int):
        raise ValueError("limit must be an integer")
    if limit <= 0:
        raise ValueError(f"limit must be a positive integer. Got: {limit}")
    if limit > 1000:
        raise ValueError(f"limit cannot be greater than 1000. Got: {limit}")


def validate_x(x: Any) -> None:
    """Raises ValueError unless ``x`` is ``"step"``."""
    if x not in ("step",):
        raise ValueError(f"x '{x}' is invalid; must be 'step'")


def validate_sort_direction(sort_direction: Any) -> Literal["asc", "desc"]:
    """``sort_direction`` checked to be ``"asc"`` or ``"desc"``; raises ValueError otherwise."""
    if sort_direction not in ("asc", "desc"):
        raise ValueError(f"sort_direction '{sort_direction}' is invalid; must be 'asc' or 'desc'")
    return "asc" if sort_direction == "asc" else "desc"


# -- type inference (§6) ----------------------------------------------------------------------

TypeLookup = Callable[[Iterable[str]], Mapping[str, set[str]]]
"""Project-wide types of attribute names (all runs, exact names)."""


def _conflict_text(types: set[str]) -> str:
    return (
        "Neptune found the attribute name in multiple runs and experiments across the project "
        f"with conflicting types: {', '.join(sorted(types))}"
    )


def _warn(name: str, text: str) -> None:
    warnings.warn(AttributeWarning(f"Attribute '{name}': {text}"), stacklevel=4)


def infer_filter_types(filter_: Filter | None, lookup: TypeLookup) -> Filter | None:
    """``filter_`` with every untyped attribute typed (§6 steps 1–3).

    Known ``sys/`` attributes get their fixed type; other names the single type found in the
    project; unknown names fall back to ``string`` with an :class:`AttributeWarning`.

    Raises:
        AttributeTypeInferenceError: a name has several types in the project.
    """
    if filter_ is None:
        return None
    untyped = [a.name for a in filter_.attributes() if a.type is None]
    if not untyped:
        return filter_
    types: dict[str, str] = {}
    pending = []
    for name in dict.fromkeys(untyped):
        if name in KNOWN_SYS_TYPES:
            types[name] = KNOWN_SYS_TYPES[name]
        else:
            pending.append(name)
    found = lookup(pending) if pending else {}
    errors = []
    missing = []
    for name in pending:
        candidates = found.get(name, set())
        if len(candidates) == 1:
            types[name] = next(iter(candidates))
        elif len(candidates) > 1:
            errors.append((name, _conflict_text(candidates)))
        else:
            types[name] = "string"
            missing.append(name)
    if errors:
        raise AttributeTypeInferenceError(
            [name for name, _ in errors], [f"{name}: {text}" for name, text in errors]
        )
    for name in missing:
        _warn(name, "Attribute doesn't exist in the project")
    return filter_.with_types(types)


def infer_sort_type(attribute: Attribute, lookup: TypeLookup) -> Attribute:
    """``sort_by`` with its type inferred (§6); conflicts and unknown names fall back to
    ``string`` with an :class:`AttributeWarning`."""
    if attribute.type is not None:
        return attribute
    if attribute.name in KNOWN_SYS_TYPES:
        return Attribute(attribute.name, KNOWN_SYS_TYPES[attribute.name])  # type: ignore[arg-type]
    candidates = lookup([attribute.name]).get(attribute.name, set())
    if len(candidates) == 1:
        return Attribute(attribute.name, next(iter(candidates)))  # type: ignore[arg-type]
    if candidates:
        _warn(attribute.name, _conflict_text(candidates))
    else:
        _warn(attribute.name, "Attribute doesn't exist in the project")
    return Attribute(attribute.name, "string")


def ensure_types_provided(filter_: Filter | None, sort_by: Attribute) -> None:
    """Global queries skip inference: every attribute must carry a type (§6 step 4).

    Raises:
        NeptuneUserError: ``sort_by`` has no type.
        AttributeTypeInferenceError: a filter attribute has no type.
    """
    if sort_by.type is None:
        raise NeptuneUserError(
            "Cannot resolve sort_by attribute type. Please pass filters.Attribute with an "
            "explicit type."
        )
    if filter_ is None:
        return
    untyped = [a.name for a in filter_.attributes() if a.type is None]
    if untyped:
        raise AttributeTypeInferenceError(
            untyped,
            [f"{n}: type not provided; global queries require an explicit type" for n in untyped],
        )
