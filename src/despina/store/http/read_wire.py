"""Query arguments and results on the wire (the native read endpoints, docs/remote-api.md).

Arguments are JSON: filters as their node tree (values as the text the filter renders, so the
server's NQL is the client's to the character), attribute selectors as their leaves. Results
are column frames (:mod:`despina.store.http.columns`) that decode into exactly the structures
the in-process snapshot returns, so ``despina.query.frames`` builds the same DataFrames from
them.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from despina.errors import InvalidQuery
from despina.query import filters as _filters
from despina.query.buckets import BucketSet
from despina.query.filters import Attribute, Filter
from despina.query.operations import BucketsRead, MetricsRead, PointsRead, SeriesRefs
from despina.query.points import FloatBatch, PointRows, StepRange
from despina.query.resolve import Selector, _Leaf
from despina.query.service import Column, Container, TableData
from despina.store.http.columns import decode, encode
from despina.store.schema import ATTRIBUTE_TYPES

__all__ = [
    "attribute_from_wire",
    "attribute_to_wire",
    "decode_buckets",
    "decode_containers",
    "decode_metrics",
    "decode_points",
    "decode_table",
    "encode_buckets",
    "encode_containers",
    "encode_metrics",
    "encode_points",
    "encode_table",
    "filter_from_wire",
    "filter_to_wire",
    "selector_from_wire",
    "selector_to_wire",
    "step_range_from_wire",
]

_MAX_DEPTH = 900
_OPS = frozenset(
    {"==", "!=", ">", ">=", "<", "<=", "MATCHES", "NOT MATCHES", "CONTAINS", "NOT CONTAINS"}
)

# -- arguments --------------------------------------------------------------------------------


def filter_to_wire(filter_: Filter | None) -> Any:
    """A filter's node tree as JSON (``None`` for no filter)."""
    return None if filter_ is None else _node_to_wire(filter_._node)


def _node_to_wire(node: Any) -> Any:
    if isinstance(node, _filters._Predicate):
        value = None if node.op == "EXISTS" else node.value_text()
        return ["p", node.op, node.attribute.name, node.attribute.type, value]
    if isinstance(node, _filters._Associative):
        return ["a", node.op, [_node_to_wire(child) for child in node.children]]
    if isinstance(node, _filters._Negation):
        return ["n", _node_to_wire(node.child)]
    if isinstance(node, _filters._RawNql):
        return ["q", node.source]
    raise TypeError(f"unknown filter node {type(node).__name__}")


def filter_from_wire(data: Any) -> Filter | None:
    """The filter :func:`filter_to_wire` encoded.

    Raises:
        InvalidQuery: ``data`` is not an encoded filter.
    """
    if data is None:
        return None
    return Filter(_node_from_wire(data, 0))


def _node_from_wire(data: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH or not isinstance(data, list) or not data:
        raise InvalidQuery("the request's filter is not an encoded filter tree (or too deep)")
    tag = data[0]
    if tag == "p" and len(data) == 5 and isinstance(data[1], str) and isinstance(data[2], str):
        op, name, type_, value = data[1], data[2], data[3], data[4]
        if op == "EXISTS":
            return _filters._Predicate(op, _attribute(name, type_))
        if op in _OPS and isinstance(value, str):
            return _filters._Predicate(op, _attribute(name, type_), value)
    elif tag == "a" and len(data) == 3 and data[1] in ("AND", "OR") and isinstance(data[2], list):
        return _filters._Associative(data[1], [_node_from_wire(c, depth + 1) for c in data[2]])
    elif tag == "n" and len(data) == 2:
        return _filters._Negation(_node_from_wire(data[1], depth + 1))
    elif tag == "q" and len(data) == 2 and isinstance(data[1], str):
        return _filters._RawNql(data[1])
    raise InvalidQuery(f"the request's filter has an unknown node {str(data)[:80]!r}")


def _attribute(name: Any, type_: Any) -> Attribute:
    if not isinstance(name, str) or not (type_ is None or type_ in _filters.KNOWN_TYPES):
        raise InvalidQuery(f"the request names an attribute {name!r} of type {type_!r}")
    return Attribute(name, type_)


def attribute_to_wire(attribute: Attribute) -> list[Any]:
    return [attribute.name, attribute.type]


def attribute_from_wire(data: Any) -> Attribute:
    """Raises: InvalidQuery: not ``[name, type]``."""
    if not isinstance(data, list) or len(data) != 2:
        raise InvalidQuery("the request's sort attribute is not [name, type]")
    return _attribute(data[0], data[1])


def selector_to_wire(selector: Selector) -> list[Any]:
    """A selector's leaves: names (sorted), extended-regex alternatives and types (sorted)."""
    return [
        [
            None if leaf.names is None else sorted(leaf.names),
            None
            if leaf.alternatives is None
            else [[list(p), list(n)] for p, n in leaf.alternatives],
            sorted(leaf.types),
        ]
        for leaf in selector.leaves
    ]


def selector_from_wire(data: Any) -> Selector:
    """Raises: InvalidQuery: not an encoded selector."""
    if not isinstance(data, list):
        raise InvalidQuery("the request's attribute selector is not a list of leaves")
    leaves = []
    for leaf in data:
        if not isinstance(leaf, list) or len(leaf) != 3:
            raise InvalidQuery("an attribute selector leaf is not [names, patterns, types]")
        names, alternatives, types = leaf
        if not _strings(types) or not set(types) <= set(ATTRIBUTE_TYPES):
            raise InvalidQuery(f"an attribute selector names unknown types {types!r}")
        if names is not None and not _strings(names):
            raise InvalidQuery("an attribute selector's names are not strings")
        if alternatives is not None and not (
            isinstance(alternatives, list)
            and all(
                isinstance(a, list) and len(a) == 2 and _strings(a[0]) and _strings(a[1])
                for a in alternatives
            )
        ):
            raise InvalidQuery("an attribute selector's patterns are not [[positive, negated]]")
        leaves.append(
            _Leaf(
                None if names is None else frozenset(names),
                None
                if alternatives is None
                else tuple((tuple(p), tuple(n)) for p, n in alternatives),
                frozenset(types),
            )
        )
    return Selector(tuple(leaves))


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def step_range_from_wire(data: Any) -> StepRange:
    """Raises: InvalidQuery: not ``[start, end]`` numbers or nulls."""
    if not (
        isinstance(data, list)
        and len(data) == 2
        and all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in data)
    ):
        raise InvalidQuery("the request's step range is not [start, end]")
    return StepRange(data[0], data[1])


# -- containers -------------------------------------------------------------------------------


def _container_arrays(containers: Sequence[Container], sort_keys: bool) -> dict[str, Any]:
    arrays: dict[str, Any] = {
        "pk": np.fromiter((c.pk for c in containers), np.int64, len(containers)),
        "label": [c.label for c in containers],
        "experiment": [c.experiment_name for c in containers],
        "parent": np.fromiter(
            (-1 if c.parent_pk is None else c.parent_pk for c in containers),
            np.int64,
            len(containers),
        ),
        "fork": [c.fork_step for c in containers],
        "created": np.fromiter((c.creation_ms for c in containers), np.int64, len(containers)),
    }
    if sort_keys:
        arrays["sort"] = [c.sort_key for c in containers]
    return arrays


def _containers(project: str, arrays: Mapping[str, npt.NDArray[Any]]) -> list[Container]:
    sort = arrays["sort"].tolist() if "sort" in arrays else None
    pks = arrays["pk"].tolist()
    parents = arrays["parent"].tolist()
    out = [
        Container(pk, label, project, experiment, None if parent < 0 else parent, fork, created)
        for pk, label, experiment, parent, fork, created in zip(
            pks,
            arrays["label"].tolist(),
            arrays["experiment"].tolist(),
            parents,
            arrays["fork"].tolist(),
            arrays["created"].tolist(),
            strict=True,
        )
    ]
    if sort is not None:
        out = [
            Container(
                c.pk,
                c.label,
                c.project,
                c.experiment_name,
                c.parent_pk,
                c.fork_step,
                c.creation_ms,
                key,
            )
            for c, key in zip(out, sort, strict=True)
        ]
    return out


def encode_containers(containers: Sequence[Container], *, sort_keys: bool = False) -> bytes:
    return encode(None, _container_arrays(containers, sort_keys))


def decode_containers(project: str, data: bytes | bytearray) -> list[Container]:
    _, arrays = decode(data)
    return _containers(project, arrays)


# -- tables -----------------------------------------------------------------------------------


def encode_table(table: TableData, *, with_containers: bool = True) -> bytes:
    arrays = _container_arrays(table.containers, False) if with_containers else {}
    meta = []
    for i, column in enumerate(table.columns):
        meta.append([column.path, column.type, column.steps is not None])
        arrays[f"{i}.rows"] = column.rows
        arrays[f"{i}.values"] = column.values
        if column.steps is not None:
            arrays[f"{i}.steps"] = column.steps
    return encode(meta, arrays)


def decode_table(
    project: str, data: bytes | bytearray, containers: list[Container] | None = None
) -> TableData:
    """The table; ``containers`` when the request named them (the answer then has none)."""
    meta, arrays = decode(data)
    if containers is None:
        containers = _containers(project, arrays)
    columns = [
        Column(
            path,
            type_,
            arrays[f"{i}.rows"],
            arrays[f"{i}.values"],
            arrays[f"{i}.steps"] if has_steps else None,
        )
        for i, (path, type_, has_steps) in enumerate(meta)
    ]
    return TableData(containers, columns)


# -- series -----------------------------------------------------------------------------------


def _series_arrays(series: SeriesRefs) -> dict[str, Any]:
    return {
        "s.container": series.container,
        "s.path": series.path,
        "s.type": series.type_code,
        "s.paths": list(series.paths),
    }


def _series(arrays: Mapping[str, npt.NDArray[Any]]) -> SeriesRefs:
    return SeriesRefs(
        arrays["s.container"],
        arrays["s.path"],
        tuple(arrays["s.paths"].tolist()),
        arrays["s.type"],
    )


def encode_metrics(read: MetricsRead, *, timestamps: bool, previews: bool) -> bytes:
    """Only the point columns the frame will use (``timestamps``, ``previews``) are sent."""
    batch = read.batch
    arrays = {
        **_container_arrays(read.containers, False),
        **_series_arrays(read.series),
        "offsets": batch.offsets,
        "steps": batch.steps,
        "values": batch.values,
    }
    if timestamps:
        arrays["timestamps"] = batch.timestamps
    if previews:
        arrays["is_preview"] = batch.is_preview
        arrays["completion"] = batch.completion
    return encode(None, arrays)


def decode_metrics(project: str, data: bytes | bytearray) -> MetricsRead:
    """Point columns that were not sent are zeros (the frame does not read them)."""
    _, arrays = decode(data)
    steps = arrays["steps"]
    n = len(steps)
    batch = FloatBatch(
        offsets=arrays["offsets"],
        steps=steps,
        values=arrays["values"],
        timestamps=arrays["timestamps"] if "timestamps" in arrays else np.zeros(n, np.int64),
        is_preview=arrays["is_preview"] if "is_preview" in arrays else np.zeros(n, bool),
        completion=arrays["completion"] if "completion" in arrays else np.zeros(n, np.float64),
    )
    return MetricsRead(_containers(project, arrays), _series(arrays), batch)


def encode_points(read: PointsRead) -> bytes:
    sizes = [len(rows.steps) for rows in read.rows]
    offsets = np.zeros(len(sizes) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    arrays = {
        **_container_arrays(read.containers, False),
        **_series_arrays(read.series),
        "offsets": offsets,
        "steps": np.array([s for rows in read.rows for s in rows.steps], np.float64),
        "timestamps": np.array([t for rows in read.rows for t in rows.timestamps], np.int64),
        "values": [v for rows in read.rows for v in rows.values],
    }
    return encode(None, arrays)


def decode_points(project: str, data: bytes | bytearray) -> PointsRead:
    _, arrays = decode(data)
    offsets = arrays["offsets"].tolist()
    steps = arrays["steps"].tolist()
    stamps = arrays["timestamps"].tolist()
    values = arrays["values"].tolist()
    rows = [PointRows(steps[a:b], stamps[a:b], values[a:b]) for a, b in itertools.pairwise(offsets)]
    return PointsRead(_containers(project, arrays), _series(arrays), rows)


_BUCKET_COLUMNS = (
    "offsets",
    "index",
    "from_x",
    "to_x",
    "first_x",
    "first_y",
    "last_x",
    "last_y",
    "y_min",
    "y_max",
)


def encode_buckets(read: BucketsRead) -> bytes:
    buckets = read.buckets
    arrays = {
        **_container_arrays(read.containers, False),
        **_series_arrays(read.series),
        **{f"b.{name}": getattr(buckets, name) for name in _BUCKET_COLUMNS},
        "b.edge_from": buckets.edges[0],
        "b.edge_to": buckets.edges[1],
    }
    x_range = None if buckets.x_range is None else list(buckets.x_range)
    return encode({"x_range": x_range}, arrays)


def decode_buckets(project: str, data: bytes | bytearray) -> BucketsRead:
    meta, arrays = decode(data)
    x_range = meta["x_range"]
    buckets = BucketSet(
        **{name: arrays[f"b.{name}"] for name in _BUCKET_COLUMNS},
        x_range=None if x_range is None else (float(x_range[0]), float(x_range[1])),
        edges=(arrays["b.edge_from"], arrays["b.edge_to"]),
    )
    return BucketsRead(_containers(project, arrays), _series(arrays), buckets)
