"""The model registry's creations under concurrency, on either backend."""

from __future__ import annotations

import threading
from pathlib import Path

from despina.store import Store
from despina.store.registry import create_model, create_model_version


def test_versions_created_at_once_get_distinct_numbers(home: Path) -> None:
    store = Store.open(home)
    model_id, _ = create_model(store, "ws/p", "NET", "me")
    made: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        try:
            made.append(create_model_version(store, "ws/p", model_id, "me")[0])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(made) == [f"{model_id}-{n}" for n in range(1, 5)]
