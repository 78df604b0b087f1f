"""Store URLs: where a store is, as given by ``DESPINA_STORE`` or ``--store``.

Accepted forms:

* a directory path (``~/.despina``, ``./runs``, ``/data/despina``): the embedded SQLite store
  kept in that directory;
* ``sqlite://`` followed by such a path: ``sqlite:///data/despina`` is ``/data/despina``,
  ``sqlite://runs`` the relative ``runs``, ``sqlite://~/x`` the home-relative ``~/x``;
* ``postgresql://[user[:password]@][host][:port][/database][?param=value&...]`` (also
  ``postgres://``): a PostgreSQL database, in libpq's URI syntax.

Anything else with a ``scheme://`` prefix is refused with the list of accepted forms. Passwords
never appear in messages: :func:`mask_url` replaces them with ``***``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from despina.errors import ConfigError

__all__ = ["ACCEPTED_FORMS", "StoreLocation", "mask_url", "parse_store_url"]

ACCEPTED_FORMS = (
    "a directory path (the embedded store), sqlite:///path/to/dir, "
    "or postgresql://user@host:port/database"
)

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_DB_FILE = "despina.db"


@dataclass(frozen=True)
class StoreLocation:
    """A parsed store URL.

    ``kind`` is ``"sqlite"`` (then ``path`` is the store directory) or ``"postgresql"`` (then
    ``url`` is the connection URL, scheme normalized to ``postgresql://``). ``display`` is the
    value to show in messages: the URL with its password masked, or the directory.
    """

    kind: Literal["sqlite", "postgresql"]
    path: Path | None = None
    url: str | None = None
    display: str = ""


def parse_store_url(value: str | os.PathLike[str]) -> StoreLocation:
    """Parse a store URL or directory path (see the module docstring for the forms).

    Nothing is opened or created; PostgreSQL URLs are checked for syntax only.

    Raises:
        ConfigError: the value is empty, has a scheme other than ``sqlite``, ``postgresql`` or
            ``postgres``, names a file instead of a directory, or is a malformed PostgreSQL URL.
    """
    if isinstance(value, os.PathLike):
        return _sqlite(Path(value), str(value))
    text = str(value)
    if not text.strip():
        raise ConfigError(f"the store URL is empty; give {ACCEPTED_FORMS}")
    found = _SCHEME_RE.match(text)
    if found is None:
        return _sqlite(Path(text), text)
    scheme = found.group(1).lower()
    rest = text[found.end() :]
    if scheme == "sqlite":
        if not rest:
            raise ConfigError(
                f"the store URL {text!r} names no directory; write it as sqlite:///path/to/dir"
            )
        if rest.startswith("//"):
            rest = "/" + rest.lstrip("/")  # sqlite:////abs (SQLAlchemy's form) is /abs too
        return _sqlite(Path(rest), text)
    if scheme in _POSTGRES_SCHEMES:
        url = "postgresql://" + rest
        _check_postgres_url(url, text)
        return StoreLocation(kind="postgresql", url=url, display=mask_url(url))
    raise ConfigError(
        f"unsupported store URL {mask_url(text)!r} (scheme {scheme!r}); give {ACCEPTED_FORMS}"
    )


def _sqlite(path: Path, given: str) -> StoreLocation:
    path = path.expanduser()
    if path.is_file():
        hint = (
            f"; the store is the directory that holds it: {str(path.parent)!r}"
            if path.name == _DB_FILE
            else ""
        )
        raise ConfigError(
            f"the store location {given!r} is a file, not a directory; give the store's "
            f"directory{hint}"
        )
    return StoreLocation(kind="sqlite", path=path, display=str(path))


def _check_postgres_url(url: str, given: str) -> None:
    """Let libpq's own parser judge the syntax (ports, percent-escapes, parameter names)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(url)
    except ProgrammingError as exc:
        detail = str(exc).strip().replace(url, mask_url(url))
        raise _malformed(given, detail) from exc
    # libpq checks ports only when connecting; a typo here is better caught at once
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise _malformed(given, f"port {port!r} is not a number from 1 to 65535")


def _malformed(given: str, detail: str) -> ConfigError:
    return ConfigError(
        f"malformed PostgreSQL URL {mask_url(given)!r}: {detail}; write it as "
        "postgresql://user:password@host:port/database"
    )


_PASSWORD_PARAM_RE = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (in the user part and in ``?password=``)."""
    found = _SCHEME_RE.match(url)
    if found is None:
        return url
    head, rest = url[: found.end()], url[found.end() :]
    # the authority ends at the first '/', '?' or '#'; the user part at its last '@'
    end = len(rest)
    for sep in "/?#":
        at = rest.find(sep)
        if at != -1:
            end = min(end, at)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        userinfo, hosts = authority.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        authority = f"{userinfo}@{hosts}"
    return head + authority + _PASSWORD_PARAM_RE.sub(r"\1***", tail)
