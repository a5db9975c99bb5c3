"""Running one job per node at once, and hearing about every job that failed.

Daemon threads rather than a ThreadPoolExecutor: on Ctrl-C an executor's `with` block (and the
interpreter's exit) waits for every queued and running job. Here a Ctrl-C stops the hand-out of
new jobs at once and the caller is told which jobs were in flight; those finish on their node
by themselves (a `docker exec` goes on without its client) and the journal says what is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from kindfix.errors import KindfixError

T = TypeVar("T")
R = TypeVar("R")

WIDTH = 8  # jobs at once: each is a `docker exec`, mostly waiting on its node


@dataclass
class Outcome(Generic[T, R]):
    item: T
    result: R | None = None
    error: BaseException | None = None
    started: bool = False
    finished: bool = False


def run_all(fn: Callable[[T], R], items: Sequence[T], width: int = WIDTH,
            on_interrupt: Callable[[list[T]], None] | None = None,
            stop: threading.Event | None = None) -> list[Outcome[T, R]]:
    """fn(item) for every item, at most `width` at once; every outcome, in item order.

    A job not yet started when `stop` is set (or on Ctrl-C) never starts. Ctrl-C in the
    caller's thread calls on_interrupt with the items in flight and re-raises at once."""
    outcomes = [Outcome[T, R](item) for item in items]
    if not outcomes:
        return outcomes
    stop = stop or threading.Event()
    lock = threading.Lock()
    done = threading.Event()
    pending = list(range(len(outcomes)))
    left = [len(outcomes)]

    def worker() -> None:
        while True:
            with lock:
                if not pending or stop.is_set():
                    return
                i = pending.pop(0)
                outcomes[i].started = True
            try:
                outcomes[i].result = fn(outcomes[i].item)
            except BaseException as e:  # every failure is the caller's to report
                outcomes[i].error = e
            with lock:
                outcomes[i].finished = True
                left[0] -= 1
                if left[0] == 0:
                    done.set()

    if len(outcomes) == 1:  # no thread for one job (the common single-node case)
        only = outcomes[0]
        only.started = True
        try:
            only.result = fn(only.item)
        except KeyboardInterrupt:
            if on_interrupt is not None:
                on_interrupt([only.item])
            raise
        except BaseException as e:
            only.error = e
        only.finished = True
        return outcomes
    try:
        for _ in range(min(width, len(outcomes))):
            threading.Thread(target=worker, daemon=True, name="kindfix-lane").start()
        while not done.wait(0.05):
            with lock:
                if stop.is_set() and all(o.finished or not o.started for o in outcomes):
                    break  # stopped: nothing runs any more, the rest never starts
    except KeyboardInterrupt:
        stop.set()
        with lock:
            flying = [o.item for o in outcomes if o.started and not o.finished]
        if on_interrupt is not None:
            on_interrupt(flying)
        raise
    return outcomes


def map_all(fn: Callable[[T], R], items: Sequence[T], what: Callable[[T], str] = str,
            width: int = WIDTH) -> list[R]:
    """fn over items at once; results in order. Any failure raises, naming every failed item
    (a Ctrl-C or a bug in one job is raised as it is)."""
    outcomes = run_all(fn, items, width)
    failed = [o for o in outcomes if o.error is not None]
    for o in failed:
        if not isinstance(o.error, KindfixError):
            raise o.error  # type: ignore[misc]
    if len(failed) == 1:
        raise failed[0].error  # type: ignore[misc]
    if failed:
        raise KindfixError(
            f"{len(failed)} of {len(outcomes)} failed: " + "; ".join(
                f"{what(o.item)}: {o.error.message}" for o in failed  # type: ignore[union-attr]
            ), hint=next((o.error.hint for o in failed  # type: ignore[union-attr]
                          if o.error.hint), None))  # type: ignore[union-attr]
    return [o.result for o in outcomes]  # type: ignore[misc]
