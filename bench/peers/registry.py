"""The contenders, in table order (despina first: the others are divided by it)."""

from __future__ import annotations

from bench.peers.aim_peer import Aim
from bench.peers.base import Peer
from bench.peers.despina_peer import Despina
from bench.peers.mlflow_peer import MlflowFile, MlflowSqlite
from bench.peers.neptune_peer import NeptuneScale
from bench.peers.neptune_query_peer import NeptuneQuery
from bench.peers.trackio_peer import Trackio
from bench.peers.wandb_peer import Wandb

PEERS: dict[str, type[Peer]] = {
    cls.key: cls
    for cls in (Despina, MlflowSqlite, MlflowFile, Aim, Trackio, Wandb, NeptuneScale, NeptuneQuery)
}
