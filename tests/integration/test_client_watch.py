"""The client's `watch()`, sync and async, against a real server: committed writes arrive in order."""

from __future__ import annotations

import asyncio
import threading

from authz_client import AuthzClient, NewContact, Right, Role
from authz_client.aio import AsyncAuthzClient

from ..conftest import Running

MANAGER, ORG = "C-PR", "ORG-SQC"


def grant(client: AuthzClient, subject: str) -> str:
    """One committed write: a new contact each time (a second relation of one role is refused)."""
    answer = client.grant_relation(
        MANAGER, ORG, new_contact=NewContact(first_name="Veille", last_name=subject, email=f"veille-{subject}@example.org"),
        role=Role.ROLE_INDIVIDU_AUTORISE, subjects=[(subject, Right.RIGHT_READ)], attest=True,
    )  # fmt: skip
    return str(answer.revision)


def test_watch_yields_each_committed_write_after_the_cursor(demo: Running) -> None:
    start = grant(demo.client, "rapport_mensuel")
    seen: list[str] = []
    done = threading.Event()

    def follow() -> None:
        with AuthzClient(f"127.0.0.1:{demo.app.port}") as watcher:
            for change in watcher.watch(start):
                if not change.checkpoint:
                    seen.append(change.revision)
                if len(seen) == 2:
                    break
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    expected = [grant(demo.client, "relations"), grant(demo.client, "scrutin_syndical")]
    assert done.wait(10)
    assert seen == expected


def test_the_async_watch_yields_the_same(demo: Running) -> None:
    start = grant(demo.client, "rapport_mensuel")
    expected = [grant(demo.client, "relations")]

    async def follow() -> list[str]:
        async with AsyncAuthzClient(f"127.0.0.1:{demo.app.port}") as watcher:
            async for change in watcher.watch(start):
                if not change.checkpoint:
                    return [change.revision]
        return []

    assert asyncio.run(asyncio.wait_for(follow(), 10)) == expected
