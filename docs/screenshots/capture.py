"""Capture the README's screenshots of the web UI (``make screenshots``).

Starts ``despina serve`` over the small demo the UI tests use, on 127.0.0.1, signs a headless
Chromium in and saves one PNG per view into this folder. Needs Chromium (``apt-get install
chromium``) and the test extra (Playwright).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "ui")]

from playwright.sync_api import sync_playwright  # noqa: E402
from ui_helpers import CHROMIUM_ARGS, chromium_path, mint, serve_demo, sign_in_tab  # noqa: E402

PROJECT = "/p/demo/despina"
SHOTS = {
    "charts-grouped.png": (
        f"{PROJECT}/charts?metric=val/loss+train/acc&group=sys/experiment/name"
        "&smooth=0.6&run=*",
        "section.chart",
    ),
    "run-page.png": (f"{PROJECT}/run?id=kittiwake-lr0.001-s1", "#metrics"),
    "runs-table.png": (f"{PROJECT}?view=runs&limit=20", "#runs-table"),
}


def main() -> int:
    executable = chromium_path()
    if executable is None:
        print("no Chromium: apt-get install -y chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="despina-screenshots-") as tmp:
        server = serve_demo(Path(tmp) / "home")
        try:
            token = mint(server.home, server.url, workspace="demo")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                sign_in_tab(page, server, token)
                table = page.request.get(server.url + f"{PROJECT}/runs.json?view=runs&limit=50")
                every = "".join(f"&run={row['run_id']}" for row in table.json()["rows"])
                for name, (path, ready) in SHOTS.items():
                    page.goto(server.url + path.replace("&run=*", every))
                    page.wait_for_selector(ready)
                    page.wait_for_timeout(800)  # charts draw after their data arrives
                    page.screenshot(path=str(HERE / name), full_page=False)
                    print(f"wrote {HERE / name}")
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
