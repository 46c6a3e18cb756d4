"""A write is in the next check on the same server: no reload, no delay, every time.

The engine is updated after the commit and before the write's answer leaves the server,
so a check sent once the grant has returned must see it, on any connection.
"""

from __future__ import annotations

from authz_client import AuthzClient, NewContact, Right, Role, check_request

from authz.replication.tokens import revision_of

from ..conftest import Running

SQC, ABC = "ORG-SQC", "EMP-ABC"
PR, ABC_PR = "C-PR", "C-ABC-PR"  # persons responsible of the association and of the employer
W, R = Right.RIGHT_WRITE, Right.RIGHT_READ
SUBJECTS = ("rapport_mensuel", "profil", "paiements_et_releves", "acces_aux_donnees", "scrutin_syndical")


def test_grant_then_check_is_allowed_every_time_and_revoke_then_check_denied(demo: Running) -> None:
    client = demo.client
    other = AuthzClient(f"127.0.0.1:{demo.app.port}", timeout=10)  # another connection, same server
    try:
        staff = client.grant_relation(
            PR,
            SQC,
            new_contact=NewContact(first_name="Test", last_name="Écriture", email="ecriture@example.org"),
            role=Role.ROLE_INDIVIDU_AUTORISE,  # the rounds add, then end, another role: one at a time
            attest=True,
        ).contact_id
        for round_number in range(40):
            subject = SUBJECTS[round_number % len(SUBJECTS)]
            granted = client.grant_relation(
                PR, SQC, contact_id=staff, role=Role.ROLE_MEMBRE_DU_PERSONNEL, subjects=[(subject, W)], attest=True
            )
            reader = client if round_number % 2 else other
            answer = reader.check(staff, SQC, subject, W)
            assert answer.allowed, (round_number, subject)
            assert revision_of(answer.revision) >= revision_of(granted.revision)

            client.revoke_relation(PR, SQC, contact_id=staff, relation_ids=[granted.relation_id], attest=True)
            assert not reader.allowed(staff, SQC, subject, W), (round_number, subject)
            assert not reader.allowed(staff, SQC, subject, R), (round_number, subject)
    finally:
        other.close()


def test_delegation_then_withdrawal_is_seen_at_once(demo: Running) -> None:
    client = demo.client
    staff = client.grant_relation(
        PR,
        SQC,
        new_contact=NewContact(first_name="Test", last_name="Délégation", email="delegation@example.org"),
        role=Role.ROLE_MEMBRE_DU_PERSONNEL,
        attest=True,
    ).contact_id
    client.grant_relation(
        PR,
        SQC,
        contact_id=staff,
        target_organization_id=ABC,
        subjects=[("paiements_et_releves", W)],
        attest=True,
    )
    assert client.allowed(staff, ABC, "paiements_et_releves", W)
    batch = client.batch_check(
        [
            check_request(staff, ABC, "paiements_et_releves", R),
            check_request(staff, ABC, "paiements_et_releves", W),
            check_request(staff, ABC, "rapport_mensuel", W),
        ]
    )
    assert [result.allowed for result in batch] == [True, True, False]

    # The employer withdraws the association: the delegated right goes with it, at once.
    client.revoke_relation(ABC_PR, ABC, grantee_organization_id=SQC, all_relations=True, attest=True)
    assert not client.allowed(staff, ABC, "paiements_et_releves", R)
    assert not client.allowed(staff, ABC, "paiements_et_releves", W)
