"""Retrieval endpoints for neptune-query (wire-protocol.md §6): decode, authorise, read, encode.

Requests are JSON (buckets: protobuf); answers are protobuf (definitions: JSON). Each handler
validates its body field by field and answers 400 naming the bad value; projects outside the
token's reach answer 403 with ``errorType: ACCESS_DENIED``.

:class:`RetrievalService` lists every handler (``app.py`` routes to them by name); each lives
in the module of its endpoint family:

* ``search``: run search (#10) and global search (#11);
* ``attributes``: attribute definitions (#12) and values (#13);
* ``float_series``: float series (#14);
* ``series``: string, histogram and file series (#15);
* ``buckets``: timeseries buckets (#16);
* ``fields`` and ``tokens``: request checking and paging tokens they share.
"""

from __future__ import annotations

from starlette.responses import Response

from despina.server.auth import Principal
from despina.server.retrieval import attributes as _attributes
from despina.server.retrieval import buckets as _buckets
from despina.server.retrieval import float_series as _float_series
from despina.server.retrieval import search as _search
from despina.server.retrieval import series as _series
from despina.server.retrieval.base import RetrievalBase

__all__ = ["RetrievalService"]


class RetrievalService(RetrievalBase):
    """Answers the retrieval endpoints from the store: one method per route, each called as
    ``(principal, body, query parameters)``."""

    def search(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        return _search.search(self, principal, body, query)

    def global_search(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        return _search.global_search(self, principal, body, query)

    def definitions(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        return _attributes.definitions(self, principal, body, query)

    def attributes(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        return _attributes.attributes(self, principal, body, query)

    def float_series(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        return _float_series.float_series(self, principal, body, query)

    def series(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        return _series.series(self, principal, body, query)

    def buckets(self, principal: Principal, body: bytes, query: dict[str, str]) -> Response:
        return _buckets.buckets(self, principal, body, query)
