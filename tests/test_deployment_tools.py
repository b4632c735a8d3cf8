"""The deployment, approval and audit tools, end to end through the in-memory MCP client.

Deployments are seeded with a ``Deployer`` on the server's own data dir and workspace before the server starts; the
server's lifespan then opens the same version store and audit log.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from generators.deploy import Deployer, Deployment
from server.settings import Settings
from tests.backend import stores_of
from tests.conftest import ServerFactory, as_key, call, call_error, connect
from tools.deployments import MAX_DIFF_CHARS

pytestmark = pytest.mark.anyio

ORIGINAL = b"def total(xs):\n    return sum(xs)\n\n\nLIMIT = 1\n"
CHANGED = b"def total(xs):\n    return sum(x for x in xs)\n\n\nLIMIT = 1\n"
CREATED = b"HELPER = True\n"
A, B = "components/acme/a.py", "components/acme/helper.py"


@contextmanager
def deployer_for(settings: Settings) -> Iterator[Deployer]:
    """A deployer on the server's data dir, workspace and stores (on its backend), closed before the server opens
    them."""
    with stores_of(settings) as databases:
        versions, audit = databases.versions(), databases.audit(time.time)
        try:
            yield Deployer(settings.workspace, settings.data_dir, versions, audit, use_git=False)
        finally:
            versions.close()
            audit.close()


def seed_workspace(settings: Settings) -> Path:
    target = settings.workspace / A
    target.parent.mkdir(parents=True)
    target.write_bytes(ORIGINAL)
    return settings.workspace


def seed_deployment(settings: Settings, tenant: str = "acme") -> Deployment:
    with deployer_for(settings) as deployer:
        return deployer.deploy(tenant, "a", {A: CHANGED, B: CREATED}, actor="cycle", reason="faster total")


def seed_pending(settings: Settings, tenant: str = "acme") -> Deployment:
    with deployer_for(settings) as deployer:
        return deployer.propose(
            tenant, "a", {A: CHANGED, B: CREATED}, actor="cycle", reason="shared change", hold_for_approval=True
        )


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_list_get_rollback_restores_exact_bytes_and_audits_the_caller(
    make_server: ServerFactory, settings: Settings
) -> None:
    ws = seed_workspace(settings)
    deployed = seed_deployment(settings)
    async with connect(make_server()) as client:
        listed = await call(client, "list_deployments", {"tenant_id": "acme"})
        assert [d["deployment_id"] for d in listed["deployments"]] == [deployed.id]
        assert listed["deployments"][0]["status"] == "deployed" and listed["has_more"] is False
        assert (await call(client, "list_deployments", {"tenant_id": "beta"}))["deployments"] == []
        assert (await call(client, "list_deployments", {"tenant_id": "acme", "status": "rolled_back"}))[
            "deployments"
        ] == []

        detail = await call(client, "get_deployment", {"deployment_id": deployed.id})
        files = {f["path"]: f for f in detail["files"]}
        assert files[A]["change"] == "modified" and files[B]["change"] == "created"
        assert files[A]["previous_sha256"] == sha(ORIGINAL) and files[A]["new_sha256"] == sha(CHANGED)
        assert files[A]["current_sha256"] == sha(CHANGED) and files[B]["previous_sha256"] is None
        assert "-    return sum(xs)\n+    return sum(x for x in xs)\n" in files[A]["diff"]
        assert files[B]["diff"].endswith("+HELPER = True\n") and detail["diff_truncated"] is False
        assert detail["reason"] == "faster total" and detail["commit_sha"] is None

        with as_key("ops-bot", ["improve", "read"], ["acme"]):
            rolled = await call(client, "rollback_deployment", {"deployment_id": deployed.id, "reason": "p99 up 30%"})
            audit = await call(client, "query_audit_log", {})
        assert rolled["deployment"]["status"] == "rolled_back"
        assert rolled["deployment"]["rollback_reason"] == "p99 up 30%"
        assert (ws / A).read_bytes() == ORIGINAL and not (ws / B).exists()
        after = await call(client, "get_deployment", {"deployment_id": deployed.id})
        assert {f["path"]: f["current_sha256"] for f in after["files"]} == {A: sha(ORIGINAL), B: None}

        kinds = [(e["kind"], e["actor"], e["subject"]) for e in audit["entries"]]
        assert kinds[0] == ("rollback", "ops-bot", deployed.id)
        assert ("deployment", "cycle", deployed.id) in kinds
        assert audit["entries"][0]["detail"]["reason"] == "p99 up 30%"
        again = await call_error(client, "rollback_deployment", {"deployment_id": deployed.id, "reason": "again"})
        assert f"deployment {deployed.id} is rolled_back; only a deployed one can be rolled back" in again


async def test_rollback_of_an_unknown_id_names_it(make_server: ServerFactory) -> None:
    async with connect(make_server()) as client:
        text = await call_error(client, "rollback_deployment", {"deployment_id": "d-404", "reason": "why not"})
        assert "no deployment has id 'd-404'; list_deployments shows the ids" in text
        assert "'d-404'" in await call_error(client, "get_deployment", {"deployment_id": "d-404"})


async def test_rollback_is_refused_when_the_files_changed_since(make_server: ServerFactory, settings: Settings) -> None:
    ws = seed_workspace(settings)
    deployed = seed_deployment(settings)
    edited = b"LIMIT = 99  # hand edit\n"
    (ws / A).write_bytes(edited)
    async with connect(make_server()) as client:
        text = await call_error(client, "rollback_deployment", {"deployment_id": deployed.id, "reason": "slow"})
        assert f"rollback of deployment {deployed.id} refused, nothing was written: ['{A}'] changed" in text
        assert "force" not in text
        status = (await call(client, "get_deployment", {"deployment_id": deployed.id}))["status"]
        refused = await call(client, "query_audit_log", {"kind": "rollback_refused"})
    assert status == "deployed" and (ws / A).read_bytes() == edited and (ws / B).read_bytes() == CREATED
    assert [e["detail"]["changed"] for e in refused["entries"]] == [[A]]


async def test_pending_change_is_listed_and_approval_writes_it(make_server: ServerFactory, settings: Settings) -> None:
    ws = seed_workspace(settings)
    change = seed_pending(settings)
    assert (ws / A).read_bytes() == ORIGINAL
    async with connect(make_server()) as client:
        with as_key("lead", ["approve", "read"], ["acme"]):
            pending = await call(client, "list_pending_approvals")
            assert [c["deployment_id"] for c in pending["changes"]] == [change.id]
            done = await call(client, "approve_change", {"change_id": change.id, "approve": True, "reason": "ok'd"})
            assert (await call(client, "list_pending_approvals"))["changes"] == []
            audit = await call(client, "query_audit_log", {"since": "1h"})
            settled = await call_error(
                client, "approve_change", {"change_id": change.id, "approve": True, "reason": "x"}
            )
        with as_key("other-team", ["approve", "read"], ["beta"]):
            assert (await call(client, "query_audit_log", {}))["entries"] == []
    assert done["deployment"]["status"] == "deployed" and done["message"] == "deployed 2 files"
    assert (ws / A).read_bytes() == CHANGED and (ws / B).read_bytes() == CREATED
    entries = [(e["kind"], e["actor"]) for e in audit["entries"]]
    assert entries[:2] == [("deployment", "lead"), ("approval_decision", "lead")]
    assert audit["entries"][1]["detail"] == {"approve": True, "reason": "ok'd", "component": "a"}
    assert f"change {change.id} is deployed, not pending_approval" in settled


async def test_rejected_change_writes_nothing(make_server: ServerFactory, settings: Settings) -> None:
    ws = seed_workspace(settings)
    change = seed_pending(settings)
    async with connect(make_server()) as client:
        done = await call(client, "approve_change", {"change_id": change.id, "approve": False, "reason": "too risky"})
        audit = await call(client, "query_audit_log", {"kind": "deployment_rejected"})
        assert (await call(client, "list_pending_approvals"))["changes"] == []
    assert done["deployment"]["status"] == "rejected" and "rejected by local: too risky" in done["deployment"]["error"]
    assert (ws / A).read_bytes() == ORIGINAL and not (ws / B).exists()
    assert [(e["subject"], e["actor"], e["detail"]["reason"]) for e in audit["entries"]] == [
        (change.id, "local", "too risky")
    ]


async def test_approval_of_a_stale_change_is_refused_and_audited(
    make_server: ServerFactory, settings: Settings
) -> None:
    ws = seed_workspace(settings)
    change = seed_pending(settings)
    (ws / A).write_bytes(b"moved on\n")
    async with connect(make_server()) as client:
        text = await call_error(client, "approve_change", {"change_id": change.id, "approve": True, "reason": "go"})
        failed = await call(client, "query_audit_log", {"kind": "approval_failed"})
    assert f"deployment {change.id}: ['{A}'] changed since the change was proposed" in text
    assert (ws / A).read_bytes() == b"moved on\n" and not (ws / B).exists()
    assert [e["subject"] for e in failed["entries"]] == [change.id]


async def test_other_tenants_deployments_are_not_found(make_server: ServerFactory, settings: Settings) -> None:
    seed_workspace(settings)
    change = seed_pending(settings, tenant="acme")
    async with connect(make_server()) as client:
        with as_key("beta-lead", ["approve", "improve", "read"], ["beta"]):
            assert (await call(client, "list_pending_approvals"))["changes"] == []
            for tool, args in (
                ("get_deployment", {"deployment_id": change.id}),
                ("approve_change", {"change_id": change.id, "approve": True, "reason": "mine now"}),
                ("rollback_deployment", {"deployment_id": change.id, "reason": "mine now"}),
            ):
                assert f"no deployment has id {change.id!r}" in await call_error(client, tool, args)
        assert (await call(client, "get_deployment", {"deployment_id": change.id}))["status"] == "pending_approval"


async def test_diffs_are_bounded_and_binary_files_are_not_diffed(
    make_server: ServerFactory, settings: Settings
) -> None:
    seed_workspace(settings)
    big = "".join(f"LINE_{i} = {i}\n" for i in range(MAX_DIFF_CHARS // 10)).encode()
    with deployer_for(settings) as deployer:
        deployed = deployer.deploy(
            "acme", "a", {"components/acme/big.py": big, "data/blob.bin": b"\x00\xff\x10", A: CHANGED},
            actor="cycle", reason="big",
        )  # fmt: skip
    async with connect(make_server()) as client:
        detail = await call(client, "get_deployment", {"deployment_id": deployed.id})
    files = {f["path"]: f for f in detail["files"]}
    assert files["data/blob.bin"]["binary"] is True and files["data/blob.bin"]["diff"] is None
    assert files["components/acme/big.py"]["truncated"] is True and detail["diff_truncated"] is True
    assert sum(len(f["diff"] or "") for f in detail["files"]) <= MAX_DIFF_CHARS
    assert files[A]["truncated"] is False and "+    return sum(x for x in xs)" in files[A]["diff"]  # a.py comes first


async def test_audit_log_since_accepts_iso_and_unix_and_refuses_nonsense(
    make_server: ServerFactory, settings: Settings
) -> None:
    seed_workspace(settings)
    seed_deployment(settings)
    async with connect(make_server()) as client:
        assert (await call(client, "query_audit_log", {"since": "2999-01-01T00:00:00Z"}))["entries"] == []
        everything = await call(client, "query_audit_log", {"since": 0, "limit": 1})
        assert len(everything["entries"]) == 1 and everything["has_more"] is True
        text = await call_error(client, "query_audit_log", {"since": "yesterday-ish"})
    assert "since='yesterday-ish' is not a time" in text
