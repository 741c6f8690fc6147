"""``mp.metrics()``: every live pool's metrics as one."""

from __future__ import annotations

from .metrics import Metrics, combine


def metrics() -> Metrics:
    """The metrics of every pool alive now, as one snapshot (see ``Pool.metrics``)."""
    from ..pool import live_pools  # (observe is below pool in the import graph)

    pools = live_pools()
    return combine(
        [pool.metrics() for pool in pools], [pool._tasks.recorder.snapshot() for pool in pools]
    )
