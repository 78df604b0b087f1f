"""Continuation tokens of the definitions and attribute-values endpoints carry the last sort
key (issue #12, finding 11: paging recomputed the whole result for every page).

Paging with any page size gives exactly one full read, and a page costs about what it
returns: the work per page is counted (rows the name filter sees, runs read), not timed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from neptune_api.proto.neptune_pb.api.v1.model.attributes_pb2 import (
    ProtoQueryAttributesResultDTO,
)

from despina.query.batch import BatchReads
from despina.server.auth import Principal
from despina.server.errors import ApiError
from despina.server.retrieval import RetrievalService
from despina.server.retrieval import attributes as retrieval_attributes
from despina.server.retrieval import fields as retrieval_fields
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import ApiKey
from despina.store.batch import Assign, Batch, MetricColumn
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

PROJECT = "ws/keyset"
RUNS = 60
T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def service(module_store: str | None, tmp_path_factory: pytest.TempPathFactory) -> RetrievalService:
    store = Store.open(Path(tmp_path_factory.mktemp("keyset")) / "home")
    store.create_project(PROJECT, key="KS")
    for r in range(RUNS):
        made = create_run(store, RunSpec(project=PROJECT, run_id=f"r{r}", creation_ms=T0 + r))
        ops: list[Any] = [Assign(f"p/{j:02d}", "float", r + j / 10) for j in range(r % 7 + 1)]
        ops.append(Assign(f"text/{r % 5}", "string", "é" * (r * 40)))
        metrics = {
            f"m/{j}": MetricColumn(np.array([1, 2]), np.array([0.5, r]), np.array([T0, T0]))
            for j in range(r % 3)
        }
        RunWriter(store, made.pk).apply(Batch(ops=ops, metrics=metrics))
    return RetrievalService(store, ServerSettings())


def _principal() -> Principal:
    return Principal(ApiKey("k", "", "n", "u", "ws", None, 0, None, None))


RUN_IDS = [f"{PROJECT}/KS-{i}" for i in range(RUNS, 0, -1)] + [f"{PROJECT}/KS-3"]


def _definitions(service: RetrievalService, limit: int, **extra: Any) -> list[list[Any]]:
    pages = []
    token = None
    for _ in range(1000):
        body = {"projectIdentifiers": [PROJECT], "nextPage": {"limit": limit}, **extra}
        if token:
            body["nextPage"]["nextPageToken"] = token
        response = service.definitions(_principal(), json.dumps(body).encode(), {})
        data = json.loads(bytes(response.body))
        pages.append(data["entries"])
        token = data["nextPage"]["nextPageToken"]
        if not token or len(data["entries"]) < limit:  # the client's rule
            return pages
    raise AssertionError("paging did not end")


def _values(service: RetrievalService, limit: int) -> list[list[tuple[str, str, str]]]:
    pages = []
    token = None
    for _ in range(2000):
        body: dict[str, Any] = {"experimentIdsFilter": RUN_IDS, "nextPage": {"limit": limit}}
        if token:
            body["nextPage"]["nextPageToken"] = token
        response = service.attributes(
            _principal(), json.dumps(body).encode(), {"projectIdentifier": PROJECT}
        )
        data = ProtoQueryAttributesResultDTO.FromString(bytes(response.body))
        pages.append(
            [
                (entry.experimentShortId, a.name, a.SerializeToString().hex())
                for entry in data.entries
                for a in entry.attributes
            ]
        )
        token = data.nextPage.nextPageToken
        if not token:  # the client's rule
            return pages
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("limit", [1, 4, 11])
def test_definitions_pages_join_to_the_full_read(service: RetrievalService, limit: int) -> None:
    (whole,) = _definitions(service, 10_000)
    assert len(whole) > 20 and whole == sorted(whole, key=lambda e: (e["name"], e["type"]))
    pages = _definitions(service, limit)
    assert [e for page in pages for e in page] == whole
    assert all(len(page) == limit for page in pages[:-1])


def test_definitions_pages_with_filters(service: RetrievalService) -> None:
    extra = {
        "attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": ["^(p|sys)/"]}]},
        "attributeFilter": [{"attributeType": "float"}, {"attributeType": "string"}],
    }
    (whole,) = _definitions(service, 10_000, **extra)
    pages = _definitions(service, 3, **extra)
    assert [e for page in pages for e in page] == whole
    assert {e["name"].split("/")[0] for e in whole} == {"p", "sys"}


def test_a_definitions_page_reads_about_its_size(
    service: RetrievalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = 0
    compile_filter = retrieval_fields.compile_name_filter

    def counting(alternatives: Any) -> Any:
        predicate = compile_filter(alternatives)

        def check(name: str) -> bool:
            nonlocal seen
            seen += 1
            return bool(predicate(name))

        return check

    monkeypatch.setattr(retrieval_fields, "compile_name_filter", counting)
    extra = {"attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": ["/"]}]}}
    (whole,) = _definitions(service, 10_000, **extra)
    seen = 0
    pages = _definitions(service, 2, **extra)
    assert [e for page in pages for e in page] == whole
    # a full read per page would check len(whole) names per page
    assert seen <= 3 * len(pages) + 3, (seen, len(pages), len(whole))


@pytest.mark.parametrize("limit", [1, 5, 64])
def test_values_pages_join_to_the_full_read(service: RetrievalService, limit: int) -> None:
    (whole,) = _values(service, 10_000)
    pages = _values(service, limit)
    assert [e for page in pages for e in page] == whole
    assert all(len(page) == limit for page in pages[:-1])
    assert [run for run, *_ in whole][:3] == ["KS-60"] * 3  # the order of experimentIdsFilter


def test_a_values_page_reads_about_its_size(
    service: RetrievalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs_read = 0
    read = BatchReads.attribute_values

    def counting(self: BatchReads, pks: Any, **kwargs: Any) -> Any:
        nonlocal runs_read
        runs_read += len(pks)
        return read(self, pks, **kwargs)

    monkeypatch.setattr(BatchReads, "attribute_values", counting)
    pages = _values(service, 5)
    # a full read per page would read all 60 runs for each page
    assert runs_read <= 20 * len(pages), (runs_read, len(pages))


def test_values_page_on_a_byte_budget(
    service: RetrievalService, monkeypatch: pytest.MonkeyPatch
) -> None:
    (whole,) = _values(service, 10_000)
    monkeypatch.setattr(retrieval_attributes, "VALUES_RESPONSE_BYTES", 3000)
    pages = _values(service, 10_000)
    assert len(pages) > 3
    assert [e for page in pages for e in page] == whole
    assert all(sum(len(v) // 2 for *_, v in page) <= 3000 for page in pages if len(page) > 1)


@pytest.mark.parametrize("token", ["???", "MTA", base64.b64encode(b'["a", 1]').decode(), "e30"])
def test_a_token_not_issued_here_is_a_400(service: RetrievalService, token: str) -> None:
    body = {"projectIdentifiers": [PROJECT], "nextPage": {"limit": 5, "nextPageToken": token}}
    with pytest.raises(ApiError) as caught:
        service.definitions(_principal(), json.dumps(body).encode(), {})
    assert caught.value.status == 400 and token[:10] in str(caught.value)
