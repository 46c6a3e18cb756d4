"""The relations of the store as plain Casbin rules, for an enforcer that is the oracle.

The server never decides this way (pycasbin scans every rule per check); the
differential test and `authz bench` do, to hold the fast engine to the model.
Only what is in force at the instant asked is emitted: Casbin has no calendar.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import casbin
from casbin.persist.adapter import Adapter

from authz.domain.dates import in_force
from authz.domain.model import Relation, RelationKind
from authz.engine.policy import Policy

__all__ = ["RulesAdapter", "build_enforcer", "casbin_rules", "policy_rules"]

NONE = "-"


def casbin_rules(relations: Iterable[Relation], at: datetime) -> Iterator[tuple[str, list[str]]]:
    """(ptype, rule) pairs for every relation in force at `at`."""
    for relation in relations:
        if not in_force(relation.start_date, relation.end_date, relation.ended_at, at):
            continue
        holder = relation.holder_id
        role = relation.role.value if relation.kind is RelationKind.CONTACT and relation.role else NONE
        via = relation.via_organization_id if relation.kind is RelationKind.DELEGATION else None
        via_field = via or NONE
        if relation.kind is RelationKind.CONTACT:
            yield "g3", [holder, "member", relation.organization_id]
            yield "p", [holder, relation.organization_id, role, NONE, NONE, NONE]
        for subject, right in relation.subjects.items():
            yield "p", [holder, relation.organization_id, role, subject, right.code, via_field]


class RulesAdapter(Adapter):  # type: ignore[misc]
    """A read-only Casbin adapter over rules already in memory, loaded as a CSV file would be."""

    def __init__(self, rules: Iterable[tuple[str, list[str]]]) -> None:
        self._rules = rules

    def load_policy(self, model: Any) -> None:
        for ptype, rule in self._rules:
            model.model[ptype[0]][ptype].policy.append(rule)


def policy_rules(policy: Policy) -> Iterator[tuple[str, list[str]]]:
    """The rules of policy.csv, as Casbin's CSV reader splits them."""
    for line in policy.policy_text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            fields = [field.strip() for field in line.split(",")]
            yield fields[0], fields[1:]


def build_enforcer(
    policy: Policy,
    relations: Iterable[Relation],
    at: datetime,
    *,
    enforcer_class: type[Any] = casbin.Enforcer,
    **options: Any,
) -> casbin.Enforcer:
    """A plain pycasbin enforcer holding the policy and the relations in force at `at`."""
    model = casbin.Enforcer.new_model(text=policy.model_text)
    rules = itertools.chain(policy_rules(policy), casbin_rules(relations, at))
    enforcer = enforcer_class(model, RulesAdapter(list(rules)), **options)

    def holds(organization_id: str, target_id: str, subject: str, right: str) -> bool:
        return bool(enforcer.enforce(organization_id, target_id, subject, right))

    enforcer.add_function("holds", holds)
    return enforcer
