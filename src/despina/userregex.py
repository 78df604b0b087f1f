"""Regular expressions written by users, matched in linear time with RE2.

Every pattern a user supplies — NQL ``MATCHES``, the attribute-name regexes of the query API and
of the retrieval endpoints, the web UI's ``metric=`` — is compiled here. Python's ``re``
backtracks (``(.*)*!`` over 30 characters takes minutes) and holds the GIL while it does, which
froze the whole server; RE2 matches in time linear in the text, releases the GIL while matching
and bounds the memory of each compiled pattern.

Semantics (documented in ``docs/nql.md``, "Regular expressions"):

* unanchored search, case-sensitive: ``exp`` matches ``my-exp-1``; anchor with ``^`` and ``$``
  (``$`` is the very end of the text; ``(?m)`` makes ``^``/``$`` match at line ends);
* RE2 syntax: character classes, ``\\d \\w \\s \\b`` (ASCII, as in RE2), ``\\pL``/``\\p{Greek}``,
  alternation, groups, greedy, lazy and counted repetition (up to 1,000), flags ``i m s U``;
* refused with :class:`InvalidPattern`, which says what to write instead: backreferences,
  lookaround, atomic groups, possessive quantifiers, ``\\Z`` (write ``\\z``), patterns longer than
  :data:`MAX_PATTERN_LENGTH` characters or compiling beyond :data:`MAX_PATTERN_MEMORY`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import re2

from despina.errors import InvalidQuery

__all__ = [
    "MAX_PATTERN_LENGTH",
    "MAX_PATTERN_MEMORY",
    "InvalidPattern",
    "UserRegex",
    "compile_user_regex",
    "user_search",
]

MAX_PATTERN_LENGTH = 1000
"""The longest pattern accepted, in characters (code points)."""

MAX_PATTERN_MEMORY = 1 << 20
"""RE2's ``max_mem`` for one pattern: its compiled program and its DFA cache share this budget.
A pattern over it is refused; a DFA that outgrows it falls back to RE2's NFA (still linear)."""

_CACHE_SIZE = 128
"""Compiled patterns kept (least recently used dropped): at most ~128 MiB of RE2 state."""

_REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")

_OPTIONS = re2.Options()
_OPTIONS.max_mem = MAX_PATTERN_MEMORY
_OPTIONS.log_errors = False  # RE2 would print every rejected pattern on stderr
_OPTIONS.never_capture = True  # only "is there a match" is ever asked

# The binding's raw RE2 object: its Match is one call into C++ that releases the GIL. The public
# ``re2.compile(...).search`` wraps it in a generator and decodes spans (about 2x the cost per
# row in an NQL scan), which a yes/no answer does not need.
_RE2: Any = re2._re2.RE2  # the untyped C extension
_UNANCHORED: Any = _RE2.Anchor.UNANCHORED


class InvalidPattern(InvalidQuery):
    """A user's regular expression is too long or not valid RE2 syntax (HTTP 400).

    ``pattern`` is the pattern as written; ``reason`` says what is wrong and what to write instead,
    without the pattern (callers that show the pattern themselves, like NQL errors, use it).
    """

    def __init__(self, pattern: str, reason: str) -> None:
        self.pattern = pattern
        self.reason = reason
        super().__init__(f"invalid regular expression {_show(pattern)}: {reason}")


class UserRegex:
    """A compiled user pattern; :meth:`search` says whether it occurs anywhere in a text."""

    __slots__ = ("pattern", "search")

    pattern: str
    search: Callable[[str], bool]
    """``search(text)``: whether the pattern matches somewhere in ``text`` (unanchored)."""

    def __init__(self, pattern: str, search: Callable[[str], bool]) -> None:
        self.pattern = pattern
        self.search = search

    def __repr__(self) -> str:
        return f"UserRegex({self.pattern!r})"


def user_search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` occurs in ``text`` (unanchored search).

    Raises:
        InvalidPattern: the pattern is too long or not valid RE2 syntax.
    """
    return compile_user_regex(pattern).search(text)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def compile_user_regex(pattern: str) -> UserRegex:
    """The compiled form of a user's ``pattern`` (cached).

    Raises:
        InvalidPattern: the pattern is longer than :data:`MAX_PATTERN_LENGTH`, is not valid
            Unicode, uses a construct RE2 does not support, or compiles too large.
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise InvalidPattern(
            pattern,
            f"it is {len(pattern):,} characters long and patterns are limited to "
            f"{MAX_PATTERN_LENGTH:,} characters; match a shorter part of the text, or split "
            "the condition into several",
        )
    try:
        encoded = pattern.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPattern(
            pattern, "it holds a lone surrogate code point, which is not valid Unicode text"
        ) from None
    compiled = _RE2(encoded, _OPTIONS)
    if not compiled.ok():
        error = compiled.error()
        error = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
        raise InvalidPattern(pattern, _explain(pattern, error))
    return UserRegex(pattern, _literal_search(pattern) or _re2_search(compiled))


def _re2_search(compiled: Any) -> Callable[[str], bool]:
    match = compiled.Match

    def search(text: str) -> bool:
        # surrogatepass: a text that is not valid Unicode is matched byte-wise, never an error.
        data = text.encode("utf-8", "surrogatepass")
        return bool(match(_UNANCHORED, data, 0, len(data))[0][0] >= 0)

    return search


def _literal_search(pattern: str) -> Callable[[str], bool] | None:
    """A plain string test when ``pattern`` is literal text, optionally anchored by ``^``/``$``:
    the same answer as RE2 (``$`` is the end of the text), without a call into it."""
    anchor_start = pattern.startswith("^")
    body = pattern[1:] if anchor_start else pattern
    anchor_end = body.endswith("$")
    body = body[:-1] if anchor_end else body
    if any(ch in _REGEX_SPECIAL for ch in body):
        return None
    if anchor_start and anchor_end:
        return body.__eq__
    if anchor_start:
        return lambda text: text.startswith(body)
    if anchor_end:
        return lambda text: text.endswith(body)
    return lambda text: body in text


_LOOKAROUND = (
    "lookahead and lookbehind ((?=…), (?!…), (?<=…), (?<!…)) are not supported; write the "
    "excluded part as a separate negated condition (in NQL: NOT MATCHES)"
)
_BACKREFERENCE = r"backreferences (\1, (?P=name)) are not supported; spell out the repeated text"

# (construct RE2 stopped at, what to write instead); RE2 names the construct after ": ".
_HINTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^\(\?<?[=!]"), _LOOKAROUND),
    (re.compile(r"^\\[1-9]"), _BACKREFERENCE),
    (
        re.compile(r"^\(\?>|[*+?}]\+$"),
        "atomic groups and possessive quantifiers are not supported (nor needed: RE2 never "
        "backtracks); use a plain group or quantifier",
    ),
    (re.compile(r"^\\Z"), r"\Z is not supported; write \z for the end of the text"),
    (re.compile(r"^\\[uU]"), r"\u and \U escapes are not supported; write \x{263A}"),
    (re.compile(r"^\(\?#"), "(?#…) comments are not supported; remove them"),
    (
        re.compile(r"^\(\?(?!P)[a-zA-Z-]+$"),
        "the only flags are i, m, s and U, as (?i) or (?i:…)",
    ),
]


def _explain(pattern: str, error: str) -> str:
    """RE2's reason, with what to write instead for the constructs Python's ``re`` knew."""
    if "pattern too large" in error:
        return (
            f"it compiles beyond the {MAX_PATTERN_MEMORY // 1024:,} KiB limit of one pattern; "
            "use fewer or smaller counted repetitions ({n}) and character classes"
        )
    if "invalid repetition size" in error:
        return (
            f"{error}; a count is at most 1,000 (the product of nested counts) and {{n,m}} "
            "needs n <= m"
        )
    detail = error.split(": ", 1)[-1]
    for construct, hint in _HINTS:
        if construct.search(detail):
            return f"{hint} (RE2: {error})"
    if detail == "(?P" and "(?P=" in pattern:
        return f"{_BACKREFERENCE} (RE2: {error})"
    return f"{error} (RE2 syntax, see docs/nql.md)"


def _show(pattern: str) -> str:
    """``pattern`` quoted for a message, shortened in the middle when very long."""
    if len(pattern) <= 120:
        return repr(pattern)
    return repr(pattern[:80]) + f" … ({len(pattern):,} characters) … " + repr(pattern[-20:])
