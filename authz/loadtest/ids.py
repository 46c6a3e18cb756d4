"""The ids a load test asks about: a sample of (contact, organization) pairs, and managers for writes.

Read either from the deployment itself (ListContacts on organizations the caller names, as an
actor allowed to read their relations) or from an import file (the format `authz import` reads, streamed).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import ijson  # type: ignore[import-untyped]

from authz.v1 import authz_pb2 as pb
from authz.v1 import authz_pb2_grpc

__all__ = ["ApiReader", "IdSample", "sample_from_api", "sample_from_file"]

# The roles that manage an organization's relations by default: actors for the load test's writes.
_MANAGING_ROLES = {"dirigeant", "personne_responsable", "ROLE_DIRIGEANT", "ROLE_PERSONNE_RESPONSABLE"}
# The role the load test's writes grant (then revoke): a contact holding it already is no member to
# grant it to, since a second relation of the same role is refused (one relation per purpose).
_WRITTEN_ROLES = {"individu_autorise", "ROLE_INDIVIDU_AUTORISE"}


@dataclass
class IdSample:
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (contact, organization) holding a relation
    managers: list[tuple[str, str]] = field(default_factory=list)  # (contact, organization) managing it
    subjects: list[str] = field(default_factory=list)
    # (contact, organization) of a relation, not a delegation: whom a write may grant something to
    members: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "managers": self.managers, "subjects": self.subjects, "members": self.members}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdSample:
        return cls(
            [(c, o) for c, o in data["pairs"]],
            [(c, o) for c, o in data["managers"]],
            list(data["subjects"]),
            [(c, o) for c, o in data["members"]],
        )


class _Reservoir:
    """A uniform sample of at most `size` items of a stream of unknown length (Vitter's algorithm R)."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.size, self.rng, self.items, self.seen = size, rng, list[tuple[str, str]](), 0

    def add(self, item: tuple[str, str]) -> None:
        self.seen += 1
        if len(self.items) < self.size:
            self.items.append(item)
        else:
            at = self.rng.randrange(self.seen)
            if at < self.size:
                self.items[at] = item


def sample_from_file(path: Path, size: int, seed: int = 1) -> IdSample:
    """A sample of the relations (and delegations) of an import file, read as a stream."""
    rng = random.Random(seed)
    pairs, managers = _Reservoir(size, rng), _Reservoir(max(size // 10, 50), rng)
    members = _Reservoir(size, rng)
    subjects: set[str] = set()
    today = date.today().isoformat()
    # One streamed pass per section: memory is the sample, whatever the file's size.
    for section, organization_field in (("relations", "organization_id"), ("delegations", "target_organization_id")):
        with path.open("rb") as source:
            for row in ijson.items(source, f"{section}.item", use_float=True):
                contact, organization = row.get("contact_id"), row.get(organization_field)
                if not isinstance(contact, str) or not isinstance(organization, str):
                    continue
                end = row.get("end_date")
                if isinstance(end, str) and end < today:  # ISO dates: ended relations are not asked about
                    continue
                pairs.add((contact, organization))
                start = row.get("start_date")
                if section == "relations" and not (isinstance(start, str) and start > today):
                    # In force today: a manager whose relation starts later may not act yet.
                    if row.get("role") not in _WRITTEN_ROLES:
                        members.add((contact, organization))
                    if row.get("role") in _MANAGING_ROLES:
                        managers.add((contact, organization))
                for item in row.get("subjects") or ():
                    if isinstance(item, dict) and isinstance(item.get("subject"), str):
                        subjects.add(item["subject"])
    return IdSample(pairs.items, managers.items, sorted(subjects), members.items)


def sample_from_api(
    client: Any, actor: str, organizations: Sequence[str], size: int, subjects: Iterable[str], seed: int = 1
) -> IdSample:
    """A sample read through the API: the contacts of each organization (ListContacts as `actor`)."""
    rng = random.Random(seed)
    pairs, managers = _Reservoir(size, rng), _Reservoir(max(size // 10, 50), rng)
    members = _Reservoir(size, rng)
    for organization in organizations:
        for row in client.iter_contacts(actor, organization, page_size=1000):
            if not row.active:
                continue
            pair = (row.contact_id, row.organization_id or organization)
            pairs.add(pair)
            if not row.via_organization_id:
                if _role_name(row.role) not in _WRITTEN_ROLES:
                    members.add(pair)
                if _role_name(row.role) in _MANAGING_ROLES:
                    managers.add(pair)
    return IdSample(pairs.items, managers.items, sorted(subjects), members.items)


def _role_name(role: int) -> str:
    return str(pb.Role.Name(role))  # type: ignore[arg-type]


class ApiReader:
    """ListContacts through a channel, page after page: what `sample_from_api` reads."""

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] | None, timeout: float) -> None:
        self.stub = authz_pb2_grpc.AuthzServiceStub(channel)
        self.metadata = metadata
        self.timeout = timeout

    def iter_contacts(self, actor: str, organization: str, *, page_size: int) -> Iterator[pb.ContactRow]:
        token = ""
        while True:
            page = self.stub.ListContacts(
                pb.ListContactsRequest(
                    actor_id=actor, organization_id=organization, page_size=page_size, page_token=token
                ),
                timeout=self.timeout,
                metadata=self.metadata,
            )
            yield from page.contacts
            token = page.next_page_token
            if not token:
                return
