"""Resource-scoped webhook endpoints (Z3 over webhooks): events only reach endpoints granted them.

The rule: an endpoint restricted on some resource types receives an event only when the event
names a resource of those types and every named resource is granted; unrestricted endpoints
receive everything they subscribe to.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError
from extapi_kit.keys import KeyService
from extapi_kit.testing import FakeClock
from extapi_kit.webhooks import (
    DeliveryStatus,
    EventCatalogue,
    WebhookDispatcher,
    WebhookManager,
    WebhookStore,
    webhook_store_from_url,
)
from extapi_kit.webhooks.outbox import publish_event, publish_in_transaction
from extapi_kit.webhooks.scoping import (
    KeyGrants,
    check_resources,
    covers,
    covers_all,
    effective_grants,
    resources_from,
)
from tests.webhooks.receivers import Recorder, serve

TYPES = ("projects", "orgs")
IDS = ("1", "2", "3", "7")


# -- the rule, exhaustively and by property ----------------------------------------------------


def test_covers_table() -> None:
    """Z3: the decision for the cases that matter, one line each."""
    p7 = {"projects": ["7"]}
    assert covers(None, {"projects": ["9"]})  # unrestricted endpoint
    assert covers({}, {})
    assert covers({"projects": ["*"]}, {"projects": ["9"]})  # "*" = all
    assert covers(p7, {"projects": ["7"]})
    assert not covers(p7, {"projects": ["9"]})
    assert not covers(p7, {"projects": ["7", "9"]})  # about 9 too: not sent
    assert not covers(p7, {})  # says nothing about whose data it is: fail closed
    assert not covers(p7, {"orgs": ["acme"]})  # about another type only: fail closed
    assert covers(p7, {"projects": ["7"], "orgs": ["acme"]})  # orgs unrestricted for it
    assert not covers({"projects": []}, {"projects": ["7"]})


def _oracle(grants: dict[str, list[str]] | None, resources: dict[str, list[str]]) -> bool:
    """An independent statement of the rule, written from the docs, not from the code."""
    if grants is None:
        return True
    limited = {t: set(ids) for t, ids in grants.items() if "*" not in ids}
    if not limited:
        return True
    pairs = [(t, i) for t, ids in resources.items() for i in ids]
    about_limited = [(t, i) for t, i in pairs if t in limited]
    return bool(about_limited) and all(i in limited[t] for t, i in about_limited)


grant_maps = st.none() | st.dictionaries(
    st.sampled_from(TYPES), st.lists(st.sampled_from((*IDS, "*")), max_size=3), max_size=2
)
resource_maps = st.dictionaries(
    st.sampled_from(TYPES), st.lists(st.sampled_from(IDS), min_size=1, max_size=3), max_size=2
)


@given(grants=grant_maps, resources=resource_maps)
def test_covers_matches_the_documented_rule(
    grants: dict[str, list[str]] | None, resources: dict[str, list[str]]
) -> None:
    """Z3: for random endpoint grants and event resources, delivery iff the rule allows it."""
    assert covers(grants, check_resources(resources)) is _oracle(grants, resources)


@pytest.mark.anyio
@given(own=grant_maps, key=grant_maps, resources=resource_maps)
async def test_own_and_key_grants_combine_as_a_logical_and(
    own: dict[str, list[str]] | None,
    key: dict[str, list[str]] | None,
    resources: dict[str, list[str]],
) -> None:
    """Z3: an endpoint's own grants and its key's grants must each allow the event (found by
    Hypothesis: merging them into one mapping let an event through that one side refuses)."""
    from extapi_kit.webhooks import Endpoint

    async def resolver(key_id: str) -> dict[str, list[str]] | None:
        return key or {}

    endpoint = Endpoint(url="https://example.com/h", grants=own, key_id="key_1")
    scopes = await effective_grants(endpoint, resolver)
    both = _oracle(own, resources) and _oracle(key or None, resources)
    assert covers_all(scopes, check_resources(resources)) is both


@pytest.mark.anyio
async def test_a_key_that_may_not_act_allows_nothing() -> None:
    """A revoked, expired or unknown owning key (resolver answers None) blocks every event."""
    from extapi_kit.webhooks import Endpoint

    async def gone(key_id: str) -> None:
        return None

    scopes = await effective_grants(Endpoint(url="https://e.com/h", key_id="k"), gone)
    assert not covers_all(scopes, {"projects": ["7"]}) and not covers_all(scopes, {})
    assert covers_all(await effective_grants(Endpoint(url="https://e.com/h"), gone), {})


def test_resources_from_payload_fields() -> None:
    """Declared fields (dotted paths, lists, ints) become normalised string ids."""
    data = {"project_id": 7, "asset": {"project": "9"}, "orgs": ["b", "a"], "none": None}
    fields = {"project_id": "projects", "asset.project": "projects", "orgs": "orgs", "x.y": "z"}
    assert resources_from(data, fields) == {"projects": ["7", "9"], "orgs": ["a", "b"]}


@pytest.mark.parametrize(
    "bad",
    [{"": [1]}, {"projects": [True]}, {"projects": ["*"]}, {"projects": [{"id": 1}]},
     {"projects": ["x" * 201]}, {"projects": list(range(101))}],
)  # fmt: skip
def test_bad_resources_are_refused(bad: dict[str, Any]) -> None:
    """Booleans, objects, "*" and oversized lists are configuration errors, not silent matches."""
    with pytest.raises(ConfigurationError):
        check_resources(bad)


# -- fan-out on every store ----------------------------------------------------------------------


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[WebhookStore]:
    s = webhook_store_from_url(store_url)
    yield s
    await s.aclose()


@pytest.mark.anyio
async def test_fanout_creates_deliveries_only_for_granted_endpoints(store: WebhookStore) -> None:
    """Z3, every backend: events about project 9 create no delivery for a project-7 endpoint."""
    manager = WebhookManager(store, allow_loopback=True)
    p7 = await manager.add_endpoint("http://127.0.0.1:9/a", grants={"projects": ["7"]})
    anyone = await manager.add_endpoint("http://127.0.0.1:9/b")
    dispatcher = WebhookDispatcher(store, resource_fields={"project_id": "projects"})
    e7 = await dispatcher.publish("job.completed", {"project_id": 7})
    e9 = await dispatcher.publish("job.completed", {"project_id": 9})
    e_none = await dispatcher.publish("platform.notice", {"text": "maintenance"})
    explicit = await dispatcher.publish("job.completed", {"x": 1}, resources={"projects": [7]})
    assert (await store.get_event(e7.id)).resources == {"projects": ["7"]}
    assert (await store.get_event(explicit.id)).resources == {"projects": ["7"]}
    got = {d.event_id for d in await manager.deliveries(endpoint_id=p7.id)}
    assert got == {e7.id, explicit.id}
    got_all = {d.event_id for d in await manager.deliveries(endpoint_id=anyone.id)}
    assert got_all == {e7.id, e9.id, e_none.id, explicit.id}
    # replaying history to the scoped endpoint never sends it project 9
    n = await manager.replay_events("job.completed", since=0, to_endpoint=p7.id)
    assert n == 2


@pytest.mark.anyio
async def test_publish_event_and_catalogue_fields(store: WebhookStore) -> None:
    """The worker-less publish and a catalogue type's resource_fields name resources too."""
    manager = WebhookManager(store, allow_loopback=True)
    p7 = await manager.add_endpoint("http://127.0.0.1:9/a", grants={"projects": ["7"]})
    await publish_event(store, "job.completed", {"p": 9}, resources={"projects": ["9"]})
    ok = await publish_event(store, "job.completed", {"p": 7}, resources={"projects": ["7"]})
    catalogue = EventCatalogue()
    catalogue.register("asset.approved", resource_fields={"asset.project_id": "projects"})
    dispatcher = WebhookDispatcher(store, catalogue=catalogue)
    approved = await dispatcher.publish("asset.approved", {"asset": {"project_id": 7}})
    await dispatcher.publish("asset.approved", {"asset": {"project_id": 3}})
    got = {d.event_id for d in await manager.deliveries(endpoint_id=p7.id)}
    assert got == {ok.id, approved.id}


def test_outbox_writes_resources_and_migrates_an_old_database(tmp_path: Path) -> None:
    """A database from before events named resources gains the column; the row carries them."""
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "CREATE TABLE extapi_webhook_events (id TEXT PRIMARY KEY, type TEXT NOT NULL,"
        " timestamp REAL NOT NULL, data TEXT NOT NULL)"
    )
    conn.execute("INSERT INTO extapi_webhook_events VALUES ('evt_old', 't', 1.0, '{}')")
    conn.execute("BEGIN")
    event = publish_in_transaction(conn, "job.completed", {"a": 1}, resources={"projects": [7]})
    conn.execute("COMMIT")
    row = conn.execute(
        "SELECT resources FROM extapi_webhook_events WHERE id = ?", (event.id,)
    ).fetchone()
    assert json.loads(row[0]) == {"projects": ["7"]}
    old = conn.execute("SELECT resources FROM extapi_webhook_events WHERE id = 'evt_old'")
    assert old.fetchone()[0] is None
    conn.close()


# -- key-owned endpoints against a real receiver ---------------------------------------------------


async def _drain(dispatcher: WebhookDispatcher) -> None:
    await dispatcher.run_until_idle()


@pytest.mark.anyio
async def test_key_owned_endpoints_follow_the_keys_live_grants(
    store: WebhookStore, tmp_path: Path
) -> None:
    """Z3: a project-7 key's endpoint gets project 7 only; narrowing, rotating and revoking the
    key apply to deliveries already queued (checked again before each attempt)."""
    clock = FakeClock(1_800_000_000.0)
    keys = KeyService(f"sqlite:///{tmp_path}/keys.db", cache_ttl=0, clock=clock)
    rec7, _ = await keys.create("tenant-7", grants={"projects": ["7", "8"]}, owner="t7")
    admin, _ = await keys.create("admin")
    recorder = Recorder()
    try:
        async with serve(recorder) as base:
            manager = WebhookManager(store, allow_loopback=True, clock=clock)
            ep7 = await manager.add_endpoint(base + "/t7", principal=rec7.to_principal())
            assert ep7.key_id == rec7.id and ep7.owner == "t7"
            assert ep7.grants == {"projects": ["7", "8"]}  # copied: scoped even without a resolver
            ep_admin = await manager.add_endpoint(base + "/admin", principal=admin.to_principal())
            assert ep_admin.grants is None
            dispatcher = WebhookDispatcher(
                store,
                allow_loopback=True,
                clock=clock,
                key_grants=KeyGrants(keys, ttl=0, clock=clock),
                resource_fields={"project_id": "projects"},
                endpoint_cache_ttl=0,
            )
            for pid in (7, 9, 8):
                await dispatcher.publish("job.completed", {"project_id": pid})
            await _drain(dispatcher)
            seen = sorted(
                (r.path, json.loads(r.body)["data"]["project_id"]) for r in recorder.requests
            )
            assert seen == [("/admin", 7), ("/admin", 8), ("/admin", 9), ("/t7", 7), ("/t7", 8)]

            # Narrowed after publish: the queued event about project 8 is cancelled, not sent.
            recorder.requests.clear()
            before = await dispatcher.publish("job.completed", {"project_id": 8})
            await keys.update(rec7.id, grants={"projects": ["7"]})
            await _drain(dispatcher)
            assert [r.path for r in recorder.requests] == ["/admin"]
            [d8] = [
                d for d in await manager.deliveries(endpoint_id=ep7.id) if d.event_id == before.id
            ]
            assert d8.status == DeliveryStatus.CANCELLED and d8.attempts == 0

            # Rotation keeps the endpoint working through the successor key.
            new, _ = await keys.rotate(rec7.id)
            recorder.requests.clear()
            await dispatcher.publish("job.completed", {"project_id": 7})
            await _drain(dispatcher)
            assert sorted(r.path for r in recorder.requests) == ["/admin", "/t7"]

            # Revoked: nothing more reaches the tenant's endpoint.
            await keys.revoke(new.id)
            recorder.requests.clear()
            await dispatcher.publish("job.completed", {"project_id": 7})
            await _drain(dispatcher)
            assert [r.path for r in recorder.requests] == ["/admin"]
            await dispatcher.stop()
    finally:
        await keys.aclose()


@pytest.mark.anyio
async def test_queued_delivery_is_cancelled_when_the_key_loses_the_grant(
    store: WebhookStore, tmp_path: Path
) -> None:
    """Z3: grants are re-read before the attempt, so a delivery created while granted is not
    sent after the grant is withdrawn (publish without a dispatcher, send later)."""
    keys = KeyService(f"sqlite:///{tmp_path}/keys.db", cache_ttl=0)
    rec, _ = await keys.create("tenant", grants={"projects": ["7"]})
    recorder = Recorder()
    try:
        async with serve(recorder) as base:
            manager = WebhookManager(store, allow_loopback=True)
            ep = await manager.add_endpoint(base + "/h", key_id=rec.id)  # no copied grants
            await publish_event(store, "job.completed", {}, resources={"projects": ["7"]})
            await keys.update(rec.id, grants={"projects": ["9"]})
            dispatcher = WebhookDispatcher(
                store, allow_loopback=True, key_grants=KeyGrants(keys, ttl=0)
            )
            await dispatcher.run_until_idle()
            await dispatcher.stop()
            assert recorder.requests == []
            [d] = await manager.deliveries(endpoint_id=ep.id)
            assert d.status == DeliveryStatus.CANCELLED
    finally:
        await keys.aclose()


@pytest.mark.anyio
async def test_key_store_outage_postpones_instead_of_sending_or_losing(
    store: WebhookStore,
) -> None:
    """F-class fault: when the owning key cannot be read, the delivery waits (no attempt, no
    leak) and is delivered once the key store answers again."""
    calls = {"n": 0}

    async def flaky(key_id: str) -> dict[str, list[str]] | None:
        calls["n"] += 1
        if calls["n"] <= 2:  # fan-out and the first attempt check fail
            raise ConnectionError("key store down")
        return {"projects": ["7"]}

    clock = FakeClock(1_800_000_000.0)
    recorder = Recorder()
    async with serve(recorder) as base:
        manager = WebhookManager(store, allow_loopback=True, clock=clock)
        ep = await manager.add_endpoint(base + "/h", key_id="key_x")
        dispatcher = WebhookDispatcher(
            store, allow_loopback=True, clock=clock, key_grants=flaky, endpoint_cache_ttl=0
        )
        await dispatcher.publish("job.completed", {}, resources={"projects": ["7"]})
        await dispatcher.run_until_idle()
        [d] = await manager.deliveries(endpoint_id=ep.id)
        assert d.status == DeliveryStatus.PENDING and d.attempts == 0 and recorder.requests == []
        clock.advance(31)
        await dispatcher.run_until_idle()
        await dispatcher.stop()
        assert len(recorder.requests) == 1
        [d] = await manager.deliveries(endpoint_id=ep.id)
        assert d.status == DeliveryStatus.SUCCEEDED


@pytest.mark.anyio
async def test_update_endpoint_grants_and_list_by_key(store: WebhookStore) -> None:
    """Operators can set and remove an endpoint's grants; bad grants are refused."""
    manager = WebhookManager(store, allow_loopback=True)
    ep = await manager.add_endpoint("http://127.0.0.1:9/a", key_id="key_1")
    await manager.add_endpoint("http://127.0.0.1:9/b")
    assert [e.id for e in await manager.list_endpoints(key_id="key_1")] == [ep.id]
    changed = await manager.update_endpoint(ep.id, grants={"projects": ["7", "9", "7"]})
    assert changed.grants == {"projects": ["7", "9"]}
    assert (await manager.update_endpoint(ep.id, grants=None)).grants is None
    with pytest.raises(ConfigurationError):
        await manager.update_endpoint(ep.id, grants={"bad type!": ["1"]})
    assert "whsec_" not in repr(changed)


@pytest.mark.anyio
async def test_loopback_only_for_endpoints_registered_with_it(store: WebhookStore) -> None:
    """W1: a dispatcher allowed to reach 127.0.0.1 (an operator's local receiver) still never
    sends an endpoint that was registered without loopback there (a partner's endpoint whose
    name later resolves to loopback, say): the attempt is ssrf_blocked, nothing arrives."""
    from extapi_kit.webhooks import Endpoint, EndpointSecret, generate_secret

    recorder = Recorder()
    async with serve(recorder) as base:
        local = await WebhookManager(store, allow_loopback=True).add_endpoint(base + "/ops")
        secret = EndpointSecret(value=generate_secret(), created_at=1.0)
        partner = Endpoint(url=base + "/partner", allow_loopback=False, secrets=[secret])
        await store.add_endpoint(partner)
        dispatcher = WebhookDispatcher(store, allow_loopback=True)
        await dispatcher.publish("job.completed", {"id": 1})
        await dispatcher.run_until_idle()
        await dispatcher.stop()
        assert [r.path for r in recorder.requests] == ["/ops"]
        manager = WebhookManager(store)
        [blocked] = await manager.deliveries(endpoint_id=partner.id)
        [attempt] = await manager.attempts(blocked.id)
        assert attempt.error == "ssrf_blocked" and attempt.status is None
        assert [d.status for d in await manager.deliveries(endpoint_id=local.id)] == [
            DeliveryStatus.SUCCEEDED
        ]


@pytest.mark.anyio
async def test_endpoint_without_a_signing_secret_fails_visibly(store: WebhookStore) -> None:
    """An endpoint stored without any usable secret (hand-made, or every secret expired) gets a
    failed delivery with error no_secret and nothing is sent unsigned; no internal error loop."""
    from extapi_kit.webhooks import Endpoint

    recorder = Recorder()
    async with serve(recorder) as base:
        bare = Endpoint(url=base + "/h", allow_loopback=True)
        await store.add_endpoint(bare)
        dispatcher = WebhookDispatcher(store, allow_loopback=True)
        await dispatcher.publish("job.completed", {"id": 1})
        await dispatcher.run_until_idle()
        await dispatcher.stop()
    assert recorder.requests == []
    manager = WebhookManager(store)
    [d] = await manager.deliveries(endpoint_id=bare.id)
    assert d.status == DeliveryStatus.FAILED and d.last_error == "no_secret"
