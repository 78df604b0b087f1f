"""neptune-query, Neptune's official read client (the PyPI package, unmodified), through the same
``despina serve`` over despina's read data sets: what a Neptune user's reading code gets."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bench.peers.base import SERIES_NAME, TABLE_PROJECT, Peer
from bench.peers.despina_peer import serve_despina
from bench.peers.serving import Served


class NeptuneQuery(Peer):
    key = "neptune-query"
    title = "neptune-query (despina serve)"
    package = "neptune-query"
    writes = False
    reads = False  # no local store: it reads through a server only
    data_of = "despina"
    api = ""  # it only reads, through a server (remote_api)
    remote_api = (
        "the same `despina serve` and token as despina; `neptune_query.set_api_token(token)`, "
        '`neptune_query.runs.fetch_metrics(project="bench/series", runs=["series"], …)`, '
        "`neptune_query.runs.fetch_runs_table(runs=Filter.gt(…))`"
    )

    def prepare(self) -> None:
        import neptune_query
        import neptune_query.runs
        from neptune_query.filters import Attribute, Filter

        logging.getLogger("neptune").setLevel(logging.ERROR)
        self._nq, self._attribute, self._filter = neptune_query, Attribute, Filter

    def serve(self, store: Path, port: int) -> Served:
        return serve_despina(store, port)

    def read_series_remote(self, store: Path, server: dict[str, str]) -> Any:
        self._nq.set_api_token(server["token"])
        return self._nq.runs.fetch_metrics(
            project="bench/series", runs=["series"], attributes=[SERIES_NAME]
        )

    def read_table_remote(self, store: Path, server: dict[str, str]) -> Any:
        self._nq.set_api_token(server["token"])
        return self._nq.runs.fetch_runs_table(
            project=f"bench/{TABLE_PROJECT}",
            runs=self._filter.gt(self._attribute("params/p00", "float"), 0.5),
            attributes=r"^(params|metrics)/",
        )
