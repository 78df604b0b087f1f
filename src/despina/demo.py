"""The demo project: realistic training runs logged with ``despina.Run``.

Three experiments of about 17 runs each; some runs fork from another at a chosen step (a restart
with a lower learning rate, a fine-tune), every run has 30 metrics over 5,000 steps, configs,
tags and a stdout-like string series. Values are generated with NumPy from simple learning-curve
shapes with noise and occasional loss spikes, so that charts and queries have something to find.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from despina.client.run import Run

__all__ = ["DEMO_PROJECT", "DemoRun", "demo_plan", "log_demo", "log_demo_extras"]

DEMO_PROJECT = "demo/despina"
STEPS = 5000
LAYERS = 8


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo plan."""

    run_id: str
    experiment: str
    lr: float
    seed: int
    tags: tuple[str, ...]
    fork_of: str | None = None
    fork_step: int | None = None
    configs: dict[str, object] = field(default_factory=dict)


EXPERIMENTS = {
    "kittiwake": {"model": "resnet", "depth": 50, "optimizer": "adamw"},
    "seagull": {"model": "vit", "depth": 12, "optimizer": "adamw"},
    "albatross": {"model": "mlp-mixer", "depth": 24, "optimizer": "sgd"},
}


def demo_plan() -> list[DemoRun]:
    """The runs to log, parents before their forks."""
    plan: list[DemoRun] = []
    for e, (experiment, arch) in enumerate(EXPERIMENTS.items()):
        roots = []
        for i, lr in enumerate((3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-4)):
            run_id = f"{experiment}-lr{lr:g}-s{i}"
            tags = ("demo", experiment, "baseline" if i < 2 else "exploration")
            roots.append(run_id)
            plan.append(DemoRun(run_id, experiment, lr, seed=100 * e + i, tags=tags, configs=arch))
        for j in range(11 if e < 2 else 10):
            parent = roots[j % len(roots)]
            fork_step = (1000, 2500, 4000)[j % 3]
            lr = 1e-4 * (1 + j)
            plan.append(
                DemoRun(
                    f"{experiment}-fork{j}-at{fork_step}",
                    experiment,
                    lr,
                    seed=100 * e + 50 + j,
                    tags=("demo", experiment, "fork", "fine-tune" if j % 2 else "restart"),
                    fork_of=parent,
                    fork_step=fork_step,
                    configs=arch,
                )
            )
    return plan


def metric_names() -> list[str]:
    """The 30 metrics every demo run logs."""
    names = [
        "train/loss",
        "val/loss",
        "train/accuracy",
        "val/accuracy",
        "train/lr",
        "train/grad_norm",
        "train/throughput",
        "system/gpu_util",
        "system/gpu_memory_gb",
        "system/cpu_util",
        "val/f1",
        "val/precision",
        "val/recall",
        "train/weight_norm",
    ]
    names += [f"layers/{i}/grad_norm" for i in range(LAYERS)]
    names += [f"layers/{i}/activation_mean" for i in range(LAYERS)]
    return names


def _curves(run: DemoRun, steps: np.ndarray) -> np.ndarray:
    """A (len(steps), 30) matrix of metric values for one run."""
    rng = np.random.default_rng(run.seed)
    n = len(steps)
    quality = 1.0 / (1.0 + abs(math.log10(run.lr) + 3.0))  # best near lr = 1e-3
    tau = 600 + 900 * rng.random()
    x = steps.astype(np.float64)
    loss = 0.15 + (2.3 - 0.15 * quality) * np.exp(-x / tau) * (1.2 - quality)
    loss = loss + 0.03 * rng.standard_normal(n)
    spikes = rng.random(n) < 0.002
    loss[spikes] += rng.uniform(1.0, 4.0, spikes.sum())  # occasional spikes charts must keep
    val_loss = loss * 1.08 + 0.02 * rng.standard_normal(n)
    acc = np.clip(1.0 - loss / 2.6 + 0.01 * rng.standard_normal(n), 0, 1)
    val_acc = np.clip(acc - 0.03 + 0.01 * rng.standard_normal(n), 0, 1)
    lr = run.lr * 0.5 * (1 + np.cos(np.pi * x / STEPS))
    grad = np.abs(1.5 * np.exp(-x / 2000) + 0.2 * rng.standard_normal(n))
    throughput = 1200 + 40 * rng.standard_normal(n)
    gpu = np.clip(92 + 3 * rng.standard_normal(n), 0, 100)
    gpu_mem = 31.5 + 0.1 * rng.standard_normal(n)
    cpu = np.clip(35 + 8 * rng.standard_normal(n), 0, 100)
    f1 = np.clip(val_acc - 0.02, 0, 1)
    weight_norm = 50 + 10 * np.log1p(x / 100)
    columns = [
        loss,
        val_loss,
        acc,
        val_acc,
        lr,
        grad,
        throughput,
        gpu,
        gpu_mem,
        cpu,
        f1,
        np.clip(f1 + 0.01, 0, 1),
        np.clip(f1 - 0.01, 0, 1),
        weight_norm,
    ]
    columns += [grad * (0.5 + 0.1 * i) for i in range(LAYERS)]
    columns += [0.1 * i + 0.02 * rng.standard_normal(n) for i in range(LAYERS)]
    return np.column_stack(columns)


def log_demo(
    home: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
    plan: list[DemoRun] | None = None,
    steps: int = STEPS,
) -> int:
    """Log the demo project; returns the number of points logged.

    ``progress(run_id, steps_done)`` is called as runs advance (every 500 steps).
    """
    names = metric_names()
    started = datetime.now(UTC) - timedelta(days=14)
    points = 0
    for index, spec in enumerate(plan or demo_plan()):
        first = 0 if spec.fork_step is None else spec.fork_step + 1
        own_steps = np.arange(first, steps)
        values = _curves(spec, own_steps)
        with Run(
            project=DEMO_PROJECT,
            run_id=spec.run_id,
            experiment_name=spec.experiment,
            fork_run_id=spec.fork_of,
            fork_step=spec.fork_step,
            creation_time=started + timedelta(hours=6 * index),
            enable_console_log_capture=False,
            source_tracking_config=None,
            home=home,
        ) as run:
            run.log_configs(
                {
                    "parameters": {
                        "lr": spec.lr,
                        "batch_size": 256,
                        "seed": spec.seed,
                        "epochs": 50,
                        **spec.configs,
                    },
                    "data": {"dataset": "birds-200", "version": "2026.3"},
                },
                flatten=True,
            )
            run.add_tags(list(spec.tags))
            rows = values.tolist()
            for offset, step in enumerate(own_steps.tolist()):
                run.log_metrics(dict(zip(names, rows[offset], strict=True)), step=step)
                if step % 100 == 0:
                    loss, acc = rows[offset][0], rows[offset][2]
                    run.log_string_series(
                        {"runtime/stdout": f"step {step:5d}  loss {loss:.4f}  acc {acc:.4f}"},
                        step=step,
                    )
                if progress is not None and step % 500 == 499:
                    progress(spec.run_id, 500)
            points += len(own_steps) * len(names)
    return points


def log_demo_extras(home: Path | None = None) -> dict[str, str]:
    """The rest of a project's life: a failed run, a trashed run, a dataset artifact, a model.

    Returns the names a reader can query for: the artifact hash and the model id.
    """
    import tempfile

    from despina.client.registry import init_model, init_model_version
    from despina.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        dataset = Path(tmp) / "birds-200"
        dataset.mkdir()
        rng = np.random.default_rng(7)
        for split in ("train", "val"):
            rows = "\n".join(f"{i},{rng.integers(0, 200)}" for i in range(500))
            (dataset / f"{split}.csv").write_text("image,label\n" + rows + "\n")
        try:
            with Run(
                project=DEMO_PROJECT,
                run_id="seagull-diverged",
                experiment_name="seagull-lr-sweep",
                description="lr 0.3: loss exploded at step 40",
                home=home,
                enable_console_log_capture=False,
                source_tracking_config=None,
            ) as run:
                artifact = run.track_artifact("data/dataset", dataset)
                run.log_configs({"parameters/lr": 0.3})
                run.add_tags(["demo", "seagull", "exploration"])
                for step in range(50):
                    run.log_metrics({"train/loss": 2.0 * 1.15**step}, step=step)
                raise FloatingPointError("loss is inf at step 50")
        except FloatingPointError:
            pass  # the run is stored as failed (sys/failed = True)
        with Run(
            project=DEMO_PROJECT,
            run_id="kittiwake-typo",
            experiment_name="kittiwake-typo",
            description="started with the wrong dataset",
            home=home,
            enable_console_log_capture=False,
            source_tracking_config=None,
        ) as run:
            run.track_artifact("data/dataset", dataset)
            run.log_metrics({"train/loss": 9.9}, step=0)
    Project(DEMO_PROJECT, home=home).trash_runs(["kittiwake-typo"])
    model = init_model(key="CLS", project=DEMO_PROJECT, name="bird classifier", home=home)
    model.log_configs({"architecture": "vit", "input_size": 224})
    model.add_tags(["demo"])
    model_id = model.id
    for number, (acc, stage) in enumerate(
        ((0.81, "archived"), (0.89, "production"), (0.91, "staging")), 1
    ):
        version = init_model_version(model=model_id, project=DEMO_PROJECT, home=home)
        version.log_configs({"validation/accuracy": acc, "trained_on": f"seagull-fork{number}"})
        version.assign_files({"weights": f"weights of version {number}".encode()})
        version.change_stage(stage)
        version.close()
    model.close()
    return {"artifact": artifact, "model": model_id}
