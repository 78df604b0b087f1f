"""What every retrieval handler shares: the store, the query service and access checks."""

from __future__ import annotations

from collections.abc import Iterable

from despina.query.catalog import parse_run_identifier
from despina.query.service import QueryService
from despina.server.auth import Principal
from despina.server.errors import access_denied, bad_request
from despina.server.settings import ServerSettings
from despina.store import Store
from despina.store.access import ProjectInfo, find_project

__all__ = ["RetrievalBase"]


class RetrievalBase:
    """The store, settings and query service, and the project checks of every endpoint."""

    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        # reads go through the query service's batch API; its attribute rows are kept on disk
        # too, so that the first read after a restart does not read them all again
        self.queries = QueryService.for_store(store)

    def project(self, principal: Principal, name: str) -> ProjectInfo:
        """The project ``name``: 403 outside the token, 404 when missing."""
        if not name:
            raise access_denied("projectIdentifier is missing; expected 'workspace/project'", 400)
        principal.require(name)
        info = find_project(self.store, name)
        if info is None:
            raise access_denied(f"project {name!r} does not exist", 404)
        return info

    def run_projects(
        self, principal: Principal, identifiers: Iterable[str], where: str
    ) -> dict[str, ProjectInfo]:
        """Projects named by run identifiers: refused outside the token, skipped if missing."""
        names: set[str] = set()
        for identifier in identifiers:
            parsed = parse_run_identifier(identifier)
            if parsed is None:
                raise bad_request(
                    f"{where}: run identifier {identifier[:100]!r} is neither "
                    "'workspace/project/<sys/id>' nor 'CUSTOM/workspace/project/<run id>'"
                )
            names.add(parsed[0])
        out: dict[str, ProjectInfo] = {}
        for name in names:
            principal.require(name)
            info = find_project(self.store, name)
            if info is not None:
                out[name] = info
        return out
