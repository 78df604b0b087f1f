"""``make bench-peers``: despina beside MLflow, Aim, trackio, W&B and neptune-scale, locally and
through each tool's server (neptune-query through ``despina serve``) (issue 16).

The peers live in the optional ``peers`` extra, installed into ``.venv-peers`` only. Every
measurement runs in a worker subprocess (``bench.peers.worker``) so that each contender starts
from a fresh process; the runner (``python -m bench.peers``) alternates contenders round-robin
per round, takes medians with ranges, prints a rich table and writes ``docs/benchmarks.md`` and
``docs/benchmarks.png``.
"""
