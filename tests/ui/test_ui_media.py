"""Media and files on the run page, in headless Chromium against a real ``despina serve``:
images inline, a file series as a gallery by step, small text files shown as text (never as
HTML), histograms drawn over their real bin edges."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import HISTOGRAM_RUN, ServerProcess, Tokens, sign_in_tab, watch_errors

import despina

pytestmark = pytest.mark.slow

PROJECT = "/p/demo/despina"
RUN = "media-run"


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def media(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("media")
    files = {
        "plots/roc.png": _png(4, 3, (200, 30, 30)),
        "notes.txt": b"<script>alert(1)</script> lr=0.001 looked best\n",
    }
    for name, content in files.items():
        (folder / Path(name).name).write_bytes(content)
    run = despina.Run(
        project="demo/despina",
        run_id=RUN,
        home=server.home,
        enable_console_log_capture=False,
        source_tracking_config=None,
    )
    run.assign_files({"plots/roc": str(folder / "roc.png"), "notes": str(folder / "notes.txt")})
    for step in range(3):
        sample = folder / f"sample-{step}.png"
        sample.write_bytes(_png(2 + step, 2, (0, 80 * step, 200)))
        files[f"samples@{step}"] = sample.read_bytes()
        run.log_files({"samples": str(sample)}, step=step)
    run.close()
    return files


@pytest.fixture
def page(browser: Any, server: ServerProcess, tokens: Tokens) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    watch_errors(tab)
    sign_in_tab(tab, server, tokens.workspace)
    yield tab
    context.close()


def _loaded(page: Any, selector: str) -> list[int]:
    page.wait_for_function(
        f"() => [...document.querySelectorAll({selector!r})].every(i => i.complete)"
    )
    return list(page.locator(selector).evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))


def test_images_gallery_and_text(page: Any, server: ServerProcess, media: dict[str, bytes]) -> None:
    page.goto(server.url + f"{PROJECT}/run?id={RUN}")
    # plots/roc and the last file of the samples series, drawn; not the text file
    assert _loaded(page, "img.file-image") == [4, 4]
    assert page.locator("#files img[alt='notes']").count() == 0
    assert page.locator("section.gallery figure").count() == 3
    assert _loaded(page, "section.gallery img") == [4, 3, 2]  # newest step first
    assert page.locator("section.gallery figcaption").all_text_contents()[0].startswith("step 2")
    page.wait_for_selector("pre.file-text")
    text = page.text_content("pre.file-text")
    assert text == media["notes.txt"].decode()  # shown as text: the tag did not run
    assert page.locator("pre.file-text script").count() == 0
    for step in range(3):
        answer = page.request.get(server.url + f"{PROJECT}/file?id={RUN}&path=samples&step={step}")
        assert answer.status == 200 and answer.body() == media[f"samples@{step}"]
        assert answer.headers["content-type"] == "image/png"
    missing = page.request.get(server.url + f"{PROJECT}/file?id={RUN}&path=samples&step=7")
    assert missing.status == 400 and "at step 7" in missing.text()
    assert not page.errors


def test_histograms_use_their_bin_edges(page: Any, server: ServerProcess) -> None:
    page.goto(server.url + f"{PROJECT}/run?id={HISTOGRAM_RUN}")
    section = page.locator("section.histogram[data-path='weights/hist']")
    page.wait_for_function(
        "() => document.querySelector('section.histogram[data-path=\"weights/hist\"]').dataset.bins"
    )
    xs = page.evaluate(
        "() => JSON.parse(document.getElementById('run-data').textContent)"
        ".histograms['weights/hist'].at(-1).histogram.edges"
    )
    assert int(section.get_attribute("data-bins") or 0) == len(xs) - 1
    assert not page.errors


def test_the_models_page_links_files_for_download(page: Any, server: ServerProcess) -> None:
    data = page.request.get(server.url + f"{PROJECT}/models.json").json()
    assert data["file_paths"] == ["weights"]
    (model,) = data["models"]
    page.goto(server.url + f"{PROJECT}/models")
    links = page.locator("table.versions a[download]")
    assert links.count() == len(model["versions"]) > 0
    for version in model["versions"]:
        sys_id = version["sys"]["sys/id"]
        href = f"/p/demo/despina/file?object={sys_id}&path=weights"
        assert page.locator(f"table.versions a[href='{href}']").count() == 1
        answer = page.request.get(server.url + href)
        assert answer.status == 200
        assert answer.body().startswith(b"weights of version ")
    missing = page.request.get(server.url + f"{PROJECT}/file?object=NOPE-1&path=weights")
    assert missing.status == 404 and "NOPE-1" in missing.text()
    assert not page.errors
