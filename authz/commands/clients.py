"""ListClients: the organizations that authorize this one (its "clients"), with what each grants
today: the delegation form's drop-down ("Une autre organisation") and the subjects it may offer.

Needs read on the organization's `relations`. One row per client: its authorizations in force
today merged (the larger right of each subject, the earliest start and the latest end).
Paged in organization-id order with the same signed tokens as the other lists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from authz.commands.base import Deps, displayed_end, relation_in_force, require_organization, require_reader
from authz.commands.paging import PageCursor, decode_token, encode_token, page_size, page_token_key
from authz.domain.model import RelationKind, Right

__all__ = ["Client", "ListClients", "ListClientsRequest", "ListClientsResult"]


@dataclass(frozen=True)
class ListClientsRequest:
    actor_id: str
    organization_id: str
    page_size: int = 0
    page_token: str = ""


@dataclass
class Client:
    organization_id: str
    organization_name: str
    subjects: dict[str, Right] = field(default_factory=dict)
    start_date: date = date.max
    end_date: date = date.min


@dataclass
class ListClientsResult:
    clients: list[Client]
    next_page_token: str


class ListClients:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def execute(self, request: ListClientsRequest) -> ListClientsResult:
        deps = self.deps
        size = page_size(request.page_size, deps.settings.default_page_size, deps.settings.max_page_size)
        query = f"clients\x1f{request.organization_id}"
        key = page_token_key(deps)
        cursor = decode_token(request.page_token, query, key)
        after = cursor.after if cursor is not None else ""
        engine = deps.engine
        retired = engine.policy.retired
        clients: dict[str, Client] = {}
        with deps.store.transaction() as tx:
            now = deps.clock()
            organization = require_organization(tx, request.organization_id)
            require_reader(deps, request.actor_id, organization.id, now)
            for relation in tx.find_relations(grantee_organization_id=organization.id):
                if relation.kind is not RelationKind.ORGANIZATION or relation.organization_id <= after:
                    continue
                if not relation_in_force(relation, now):
                    continue
                grants = {s: r for s, r in engine.effective_grants(relation, now).items() if s not in retired}
                if not grants:
                    continue
                client = clients.get(relation.organization_id)
                if client is None:
                    grantor = tx.get_organization(relation.organization_id)
                    client = clients[relation.organization_id] = Client(
                        relation.organization_id, grantor.name if grantor else ""
                    )
                for subject, right in grants.items():
                    client.subjects[subject] = max(client.subjects.get(subject, Right.NONE), right)
                client.start_date = min(client.start_date, relation.start_date)
                client.end_date = max(client.end_date, displayed_end(relation))
        ordered = [clients[key_] for key_ in sorted(clients)]
        page = ordered[:size]
        token = encode_token(PageCursor(query, page[-1].organization_id), key) if len(ordered) > size else ""
        return ListClientsResult(page, token)
