"""The seed document's query examples, runnable on any project (for ``despina demo``).

:func:`seed_examples` runs the calls of the "Query metric values" seed (spec/query-api.md §16.3)
against a project's experiments: a step range, a tail limit, absolute timestamps, previews,
lineage on and off, buckets, and the last step of each metric. It returns titled frames for the
caller to print; nothing here prints.
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from despina.query.warnings import ExperimentalWarning

__all__ = ["seed_examples"]


def seed_examples(
    project: str, *, metric: str | None = None
) -> list[tuple[str, str, pd.DataFrame]]:
    """``(title, code, frame)`` for each seed example on ``project``.

    The first experiment (by name) is used, and for lineage the first forked run (by run ID);
    ``metric`` defaults to the first metric whose name contains ``loss``.

    Raises:
        NeptuneProjectInaccessible: the project is not in the store.
        ValueError: the project has no experiment with float series.
    """
    import despina.query as nq
    import despina.query.runs as nq_runs
    from despina.query.api import open_snapshot

    experiments = nq.list_experiments(project=project)
    if not experiments:
        raise ValueError(f"project {project!r} has no experiments to run the examples on")
    first = experiments[0]
    names = nq.list_attributes(
        project=project, experiments=[first], attributes=nq.AttributeFilter(type="float_series")
    )
    if not names:
        raise ValueError(f"experiment {first!r} of {project!r} has no float series")
    metric = metric or next((n for n in names if "loss" in n), names[0])
    with open_snapshot(project) as snap:
        forked = sorted(c.label for c in snap.search(kind="run") if c.parent_pk is not None)
    out: list[tuple[str, str, pd.DataFrame]] = []

    def add(title: str, code: str, frame: pd.DataFrame) -> None:
        out.append((title, code, frame))

    def metrics(**options: Any) -> pd.DataFrame:
        return nq.fetch_metrics(
            project=project, experiments=[first], attributes=[metric], **options
        )

    last = metrics(tail_limit=1)
    last_step = float(last.index.get_level_values("step").max()) if len(last) else 0.0
    low = max(0.0, last_step / 2)
    add(
        "Step range",
        f"fetch_metrics(..., step_range=({low}, {low + 3}))",
        metrics(step_range=(low, low + 3)),
    )
    add("Tail limit", "fetch_metrics(..., tail_limit=3)", metrics(tail_limit=3))
    add(
        "Absolute timestamps",
        'fetch_metrics(..., tail_limit=3, include_time="absolute")',
        metrics(tail_limit=3, include_time="absolute"),
    )
    add(
        "Point previews",
        "fetch_metrics(..., tail_limit=3, include_point_previews=True)",
        metrics(
            tail_limit=3,
            include_point_previews=True,
        ),
    )
    for flag in (True, False) if forked else ():
        # the runs API shows lineage best: without it a fork has only its own points
        frame = nq_runs.fetch_metrics(
            project=project,
            runs=[forked[0]],
            attributes=[metric],
            lineage_to_the_root=flag,
        )
        steps = frame.index.get_level_values("step")
        span = f"{steps.min()}–{steps.max()}" if len(steps) else "none"
        summary = frame.iloc[[0, -1]] if len(frame) > 1 else frame
        add(
            f"Lineage to the root = {flag} ({len(frame)} points, steps {span})",
            f"runs.fetch_metrics(runs=[{forked[0]!r}], lineage_to_the_root={flag})",
            summary,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        add(
            "Buckets",
            "fetch_metric_buckets(..., limit=10)",
            nq.fetch_metric_buckets(project=project, experiments=[first], y=[metric], limit=10),
        )
    add(
        "Last step of each metric",
        'fetch_metrics(..., attributes=r"^train/", tail_limit=1)',
        nq.fetch_metrics(project=project, experiments=[first], attributes=r"^train/", tail_limit=1),
    )
    return out
