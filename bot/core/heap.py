"""The serving process's heap: what lives as long as the process is kept out of the collector's full passes.

A full (oldest-generation) garbage collection walks every container object in the process. In `dnabot serve`
that is the imported code of Bolt, SQLAlchemy and pydantic plus the warm lineage graph, ~190k objects at 10k
tables: each full pass held the GIL for ~110 ms on 2 cores, and came every few questions, so it was most of the
95th-percentile latency of a `/dna why`. Once the process has started, and again after each graph rebuild, the
surviving heap is collected once and frozen (`gc.freeze`): later passes look only at what is newer. Frozen objects
are still freed by reference counting (the lineage graph holds no reference cycles), so a replaced graph goes.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()
_state = {"enabled": False, "settled_build": -1}


def keep_long_lived_out_of_full_collections() -> None:
    """Called once by `serve`, when the process has imported what it serves with: freeze what lives now."""
    with _lock:
        _state["enabled"] = True
        _settle()


def after_graph_build(builds: int) -> None:
    """After the warm graph of build number `builds` is in place: freeze the new graph too (once per build)."""
    with _lock:
        if not _state["enabled"] or _state["settled_build"] == builds:
            return
        _state["settled_build"] = builds
        _settle()


def _settle() -> None:
    gc.collect()  # garbage is not frozen: only what survives (a pass over the not yet frozen objects only)
    gc.freeze()


def reset() -> None:
    """Back to the interpreter's default (tests): nothing frozen, nothing settled."""
    with _lock:
        _state.update(enabled=False, settled_build=-1)
        gc.unfreeze()
