"""The README and docs/ link only to files that are in the repository (the spec documents
are not: earlier pages pointed readers at ``spec/...`` paths they could not open)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
SPEC_PATH = re.compile(r"(?<![\w/])spec/[\w.-]+\.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_point_at_files_in_the_repository(page: Path) -> None:
    text = page.read_text()
    missing = [
        target
        for target in LINK.findall(text)
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert missing == [], f"{page.name} links to missing files: {missing}"
    assert SPEC_PATH.findall(text) == [], f"{page.name} names spec files readers cannot open"
