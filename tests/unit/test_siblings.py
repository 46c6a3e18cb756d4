"""SiblingRevision: the shared counter of worker processes only goes up, and a read catches up only when behind."""

from __future__ import annotations

import os

from authz.replication.siblings import SiblingRevision


def test_publish_only_raises_and_is_seen_by_a_forked_process() -> None:
    shared = SiblingRevision()
    shared.publish(7)
    shared.publish(3)  # a slower writer of an older revision publishing late
    assert shared.revision == 7
    pid = os.fork()
    if pid == 0:  # the sibling: raises it in the shared page
        shared.publish(12)
        os._exit(0)
    os.waitpid(pid, 0)
    assert shared.revision == 12


def test_a_read_catches_up_only_when_its_engine_is_behind() -> None:
    shared = SiblingRevision()
    engine_revision = [5]
    asked: list[tuple[int, float]] = []
    ensure = shared.reader(lambda: engine_revision[0], lambda target, timeout: asked.append((target, timeout)))
    shared.publish(5)
    ensure(2.0)
    assert asked == []
    shared.publish(9)
    ensure(1.5)
    assert asked == [(9, 1.5)]
