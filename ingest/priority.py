"""Ingest is batch work: a process that only ingests runs below the priority of the processes answering questions,
so an ingest on the same machine slows answers less (on 2 cores a question's own work is about 55 ms; an ingest at
the same priority takes one core of the two)."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def lower_priority(nice: int) -> None:
    """Raise this process's niceness by `nice` (0: unchanged). Call it before any thread starts: on Linux the
    niceness is a thread's, and the threads started after it inherit it. Not for a process that also answers
    questions: a Chroma client opened by a lowered thread keeps lowered worker threads for every later reader."""
    if nice <= 0:
        return
    try:
        os.nice(nice)
    except OSError as e:  # (a platform without it, or a limit)
        log.warning("ingest priority not lowered (%s)", e)
