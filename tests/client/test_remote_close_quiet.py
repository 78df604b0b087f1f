"""``close(timeout=...)`` against a server that does not answer returns in time, and no
callback of the run is called after it returned: the sender thread still retrying reports to
the ``despina`` logger instead (a training script may tear down what its callbacks use)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from typing import Any

import pytest

import despina
from serving import free_port

pytestmark = pytest.mark.usefixtures("remote_env")


def test_no_callback_after_close_with_a_timeout_returned(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: every connection is refused
    token = base64.b64encode(json.dumps({"api_url": url, "api_key": "k" * 16}).encode()).decode()
    calls: list[tuple[str, float]] = []
    lock = threading.Lock()

    def record(kind: str) -> Any:
        def callback(exc: BaseException, last: float | None) -> None:
            with lock:
                calls.append((kind, time.monotonic()))

        return callback

    run = despina.Run(
        project="team/quiet",
        api_token=token,
        enable_console_log_capture=False,
        source_tracking_config=None,
        on_error_callback=record("error"),
        on_warning_callback=record("warning"),
        on_network_error_callback=record("network"),
    )
    for step in range(10):
        run.log_metrics({"loss": float(step)}, step=step)
    with caplog.at_level(logging.ERROR, logger="despina"):
        run.close(timeout=0.5)
        closed_at = time.monotonic()
        time.sleep(3.0)  # the sender keeps retrying the down server meanwhile
    with lock:
        assert calls, "the down server was reported to the network callback before close"
        late = [kind for kind, at in calls if at > closed_at]
    assert late == []
