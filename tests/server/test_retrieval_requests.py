"""Request checking of the retrieval endpoints: a bad attribute-name pattern is a 400 naming
the field it came from (issue #12, findings 1 and 3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from despina.server.auth import Principal
from despina.server.errors import ApiError
from despina.server.retrieval import RetrievalService
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import ApiKey
from despina.store.batch import Assign, Batch
from despina.store.runs import RunSpec, create_run
from despina.store.writer import RunWriter

PROJECT = "ws/requests"


@pytest.fixture(scope="module")
def service(module_store: str | None, tmp_path_factory: pytest.TempPathFactory) -> RetrievalService:
    store = Store.open(Path(tmp_path_factory.mktemp("requests")) / "home")
    store.create_project(PROJECT, key="RQ")
    made = create_run(store, RunSpec(project=PROJECT, run_id="r0", creation_ms=1_700_000_000_000))
    RunWriter(store, made.pk).apply(Batch(ops=[Assign("p/x", "float", 1.0)]))
    return RetrievalService(store, ServerSettings())


def _principal() -> Principal:
    return Principal(ApiKey("k", "", "n", "u", "ws", None, 0, None, None))


def _refusal(service: RetrievalService, endpoint: str, body: dict[str, Any]) -> str:
    handler = getattr(service, endpoint)
    with pytest.raises(ApiError) as caught:
        handler(_principal(), json.dumps(body).encode(), {"projectIdentifier": PROJECT})
    assert caught.value.status == 400, caught.value
    return str(caught.value)


@pytest.mark.parametrize(
    ("endpoint", "body", "at"),
    [
        (
            "definitions",
            {
                "projectIdentifiers": [PROJECT],
                "attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": ["(?=x)"]}]},
            },
            "definitions.attributeNameFilter.mustMatchAny[0].mustMatchRegexes[0]",
        ),
        (
            "definitions",
            {
                "projectIdentifiers": [PROJECT],
                "attributeNameFilter": {
                    "mustMatchAny": [
                        {"mustMatchRegexes": ["p/"]},
                        {"mustMatchRegexes": ["x"], "mustNotMatchRegexes": ["y", "(?=x)"]},
                    ]
                },
            },
            "definitions.attributeNameFilter.mustMatchAny[1].mustNotMatchRegexes[1]",
        ),
        (
            "definitions",
            {"projectIdentifiers": [PROJECT], "attributeNameRegex": "(?=x)"},
            "definitions.attributeNameRegex",
        ),
        (
            "attributes",
            {
                "experimentIdsFilter": [f"{PROJECT}/RQ-1"],
                "attributeNameFilter": {"mustMatchAny": [{"mustMatchRegexes": ["(?=x)"]}]},
            },
            "attributes.attributeNameFilter.mustMatchAny[0].mustMatchRegexes[0]",
        ),
    ],
)
def test_a_bad_name_pattern_is_a_400_naming_its_field(
    service: RetrievalService, endpoint: str, body: dict[str, Any], at: str
) -> None:
    message = _refusal(service, endpoint, body)
    assert message.startswith(f"{at}: invalid regular expression '(?=x)': "), message
    assert "lookahead" in message, message
