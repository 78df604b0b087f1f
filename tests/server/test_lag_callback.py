"""neptune-scale's async lag callback against ``despina serve``, as against Neptune: it fires
again for every new lag episode (issue #14, deliverable 4).

The client checks once a second whether its oldest operation without a status is older than
``async_lag_threshold``; the server answers an operation's status as "not yet processed" for
``STATUS_SETTLE_S`` after storing it (as Neptune's asynchronous processing does), so every
operation is seen by that check.
"""

from __future__ import annotations

import pytest
from server_helpers import ServerProcess, Tokens, run_logging_script

from despina.server.ingest import STATUS_SETTLE_S

pytestmark = pytest.mark.slow

pytest.importorskip("neptune_scale")

LAGGING = """
import time
from neptune_scale import Run

fired = []
run = Run(run_id="lagging", async_lag_threshold=0.001,
          on_async_lag_callback=lambda: fired.append(1),
          enable_console_log_capture=False, source_tracking_config=None)
counts = []
for i in range(3):
    run.wait_for_processing(verbose=False)
    time.sleep(1.5)  # the client's check sees an empty queue: the lag episode is over
    before = len(fired)
    run.log_configs({f"config/{i}": i})
    run.wait_for_processing(verbose=False)
    counts.append(len(fired) - before)
run.close()
print("COUNTS", counts)
"""


def test_lag_callback_fires_again_after_each_log_configs(
    server: ServerProcess, tokens: Tokens, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert STATUS_SETTLE_S > 1.0  # longer than the client's check interval (1 s)
    result = run_logging_script(LAGGING, tmp_path_factory.mktemp("lag"), tokens.project)
    counts = [line for line in result.stdout.splitlines() if line.startswith("COUNTS")]
    assert counts == ["COUNTS [1, 1, 1]"], result.stdout + result.stderr
