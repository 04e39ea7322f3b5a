"""Standard Webhooks signing and verification, including interop with ``standardwebhooks``."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

import httpx
import pytest
import standardwebhooks
from hypothesis import given
from hypothesis import strategies as st

from extapi_kit.exceptions import ConfigurationError, WebhookVerificationError
from extapi_kit.webhooks.signing import (
    Webhook,
    generate_secret,
    sign,
    signature_headers,
    verify,
)

# The spec's test vector (anchors-webhooks.md §4.4).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TS = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

secret_bytes = st.binary(min_size=24, max_size=64)
bodies = st.text(max_size=200).map(lambda t: t.encode("utf-8"))


def _secret(raw: bytes) -> str:
    return "whsec_" + base64.b64encode(raw).decode()


def test_spec_test_vector() -> None:
    """Our signer reproduces the spec's test vector exactly (W11, interop test 1)."""
    assert sign(SECRET, MSG_ID, TS, BODY) == EXPECTED
    assert signature_headers([SECRET], MSG_ID, TS, BODY) == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(TS),
        "webhook-signature": EXPECTED,
    }


def test_spec_vector_verifies_with_both_libraries() -> None:
    """The vector's headers verify with our verifier and with standardwebhooks (W11)."""
    headers = signature_headers([SECRET], MSG_ID, TS, BODY)
    verify(BODY, headers, SECRET, now=TS)
    lib = standardwebhooks.Webhook(SECRET)
    lib_headers = dict(headers)
    lib_headers["webhook-timestamp"] = str(int(datetime.now(tz=UTC).timestamp()))
    lib_headers["webhook-signature"] = sign(
        SECRET, MSG_ID, int(lib_headers["webhook-timestamp"]), BODY
    )
    assert lib.verify(BODY, lib_headers) == {"test": 2432232314}


@given(
    raw=secret_bytes,
    text=st.text(max_size=200),
    msg=st.from_regex(r"msg_[A-Za-z0-9]{1,30}", fullmatch=True),
)
def test_ours_signs_library_verifies(raw: bytes, text: str, msg: str) -> None:
    """standardwebhooks accepts what we sign, for any 24-64 byte key and UTF-8 body (interop 2)."""
    secret = _secret(raw)
    body = json.dumps({"v": text}, ensure_ascii=False).encode("utf-8")
    now = int(datetime.now(tz=UTC).timestamp())
    headers = signature_headers([secret], msg, now, body)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {"v": text}


@given(raw=secret_bytes, body=bodies)
def test_library_signs_ours_verifies(raw: bytes, body: bytes) -> None:
    """Our verifier accepts what standardwebhooks signs (interop 4)."""
    secret = _secret(raw)
    ts = 1_700_000_000
    token = standardwebhooks.Webhook(secret).sign(
        "msg_1", datetime.fromtimestamp(ts, tz=UTC), body.decode("utf-8")
    )
    headers = {"Webhook-Id": "msg_1", "Webhook-Timestamp": str(ts), "Webhook-Signature": token}
    verify(body, headers, secret, now=ts)
    verify(body.decode("utf-8"), headers, secret, now=ts)


def test_library_verify_accepts_our_json_request() -> None:
    """standardwebhooks.Webhook.verify returns the payload for a request we signed (interop 2)."""
    secret = generate_secret()
    body = '{"type":"job.completed","data":{"name":"Zoë ✓"}}'.encode()
    now = int(datetime.now(tz=UTC).timestamp())
    headers = signature_headers([secret], "msg_abc", now, body)
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {
        "type": "job.completed",
        "data": {"name": "Zoë ✓"},
    }


def test_rotation_two_secrets_either_verifies() -> None:
    """A rotation header carries two tokens; each secret alone verifies, a third does not (W11)."""
    new, old, other = generate_secret(), generate_secret(), generate_secret()
    headers = signature_headers([new, old], "msg_rot", TS, BODY)
    tokens = headers["webhook-signature"].split(" ")
    assert len(tokens) == 2 and tokens[0] == sign(new, "msg_rot", TS, BODY)
    verify(BODY, headers, new, now=TS)
    verify(BODY, headers, old, now=TS)
    verify(BODY, headers, [other, old], now=TS)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers, other, now=TS)
    now = int(datetime.now(tz=UTC).timestamp())
    fresh = signature_headers([new, old], "msg_rot", now, BODY)
    for secret in (new, old):
        standardwebhooks.Webhook(secret).verify(BODY, fresh)


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-301, False), (-300, True), (-299, True), (299, True), (301, False)]
)
def test_tolerance_edges(offset: int, accepted: bool) -> None:
    """Timestamps within ±tolerance verify; beyond it in either direction they fail (W11)."""
    headers = signature_headers([SECRET], MSG_ID, TS + offset, BODY)
    if accepted:
        verify(BODY, headers, SECRET, now=TS)
    else:
        with pytest.raises(WebhookVerificationError, match="too"):
            verify(BODY, headers, SECRET, now=TS)


def test_custom_tolerance() -> None:
    """The tolerance is configurable (stricter and looser than 300 s)."""
    headers = signature_headers([SECRET], MSG_ID, TS - 100, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers, SECRET, now=TS, tolerance=60)
    old = signature_headers([SECRET], MSG_ID, TS - 3600, BODY)
    verify(BODY, old, SECRET, now=TS, tolerance=7200)


@pytest.mark.parametrize("part", ["body", "id", "timestamp"])
def test_tampering_fails(part: str) -> None:
    """Changing the body, the id or the timestamp breaks the signature (interop 6)."""
    headers = signature_headers([SECRET], MSG_ID, TS, BODY)
    body = BODY
    if part == "body":
        body = BODY.replace(b"2", b"3")
    elif part == "id":
        headers["webhook-id"] = MSG_ID + "x"
    else:
        headers["webhook-timestamp"] = str(TS + 1)
    with pytest.raises(WebhookVerificationError, match="No matching"):
        verify(body, headers, SECRET, now=TS)


def test_reserialised_body_fails() -> None:
    """A body re-serialised after signing (different whitespace) does not verify (W11)."""
    headers = signature_headers([SECRET], MSG_ID, TS, BODY)
    with pytest.raises(WebhookVerificationError):
        verify(b'{"test":2432232314}', headers, SECRET, now=TS)


def test_v1a_token_is_skipped_and_v1_still_verifies() -> None:
    """A header mixing a v1a token with a valid v1 token verifies (interop 7)."""
    headers = signature_headers([SECRET], MSG_ID, TS, BODY)
    headers["webhook-signature"] = "v1a,AAAA " + headers["webhook-signature"]
    verify(BODY, headers, SECRET, now=TS)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.pop("webhook-id"), "Missing"),
        (lambda h: h.pop("webhook-timestamp"), "Missing"),
        (lambda h: h.pop("webhook-signature"), "Missing"),
        (lambda h: h.update({"webhook-timestamp": "1614265330.5"}), "Invalid"),
        (lambda h: h.update({"webhook-timestamp": "-1614265330"}), "Invalid"),
        (lambda h: h.update({"webhook-timestamp": "٣٣"}), "Invalid"),
        (lambda h: h.update({"webhook-signature": "v1"}), "No matching"),
        (lambda h: h.update({"webhook-signature": "v1,abc"}), "No matching"),
        (lambda h: h.update({"webhook-signature": "v1,!!!!"}), "No matching"),
        (lambda h: h.update({"webhook-signature": " ".join(["v1,AAAA"] * 40)}), "Too many"),
    ],
)
def test_malformed_headers_raise_verification_error(mutate: object, message: str) -> None:
    """Every malformed input becomes a WebhookVerificationError, never another exception."""
    headers = signature_headers([SECRET], MSG_ID, TS, BODY)
    mutate(headers)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError, match=message):
        verify(BODY, headers, SECRET, now=TS)


header_names = st.sampled_from(
    ["webhook-id", "Webhook-Timestamp", "WEBHOOK-SIGNATURE", "svix-id", "x-other"]
)


@given(
    headers=st.dictionaries(header_names | st.text(max_size=20), st.text(max_size=80)),
    payload=st.binary(max_size=64) | st.text(max_size=64),
)
def test_junk_never_raises_anything_else(headers: dict[str, str], payload: bytes | str) -> None:
    """On arbitrary headers and bodies verify raises only WebhookVerificationError (hypothesis)."""
    with pytest.raises(WebhookVerificationError):
        verify(payload, headers, SECRET, now=TS)


@given(
    ts=st.integers(min_value=TS - 300, max_value=TS + 300),
    sig=st.lists(
        st.from_regex(r"v1,[A-Za-z0-9+/=]{0,60}", fullmatch=True) | st.text(max_size=50),
        max_size=5,
    ),
)
def test_junk_signatures_with_valid_timestamp(ts: int, sig: list[str]) -> None:
    """Random signature tokens with an in-tolerance timestamp fail cleanly (hypothesis)."""
    headers = {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sig),
    }
    with pytest.raises(WebhookVerificationError):
        verify(BODY, headers, SECRET, now=TS)


def test_case_insensitive_and_svix_headers() -> None:
    """Header names match case-insensitively; svix-* headers are accepted as a fallback."""
    headers = signature_headers([SECRET], MSG_ID, TS, BODY)
    upper = {k.upper(): v for k, v in headers.items()}
    verify(BODY, upper, SECRET, now=TS)
    svix = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    verify(BODY, svix, SECRET, now=TS)


def test_generate_secret_format() -> None:
    """Generated secrets are whsec_ + standard base64 of the requested size, no '-', '_', space."""
    for n in (24, 32, 64):
        secret = generate_secret(n)
        assert secret.startswith("whsec_")
        encoded = secret.removeprefix("whsec_")
        assert not set(encoded) & set("-_ \n")
        assert len(base64.b64decode(encoded, validate=True)) == n
    assert generate_secret() != generate_secret()
    with pytest.raises(ConfigurationError):
        generate_secret(16)


@pytest.mark.parametrize(
    "bad",
    [
        "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # URL-safe alphabet
        "whsec_" + base64.b64encode(os.urandom(8)).decode(),  # too short
        "whsec_abc def",
        "whsec_",
    ],
)
def test_malformed_secret_is_configuration_error(bad: str) -> None:
    """A URL-safe, short or garbled secret is a configuration error, not silently another key."""
    with pytest.raises(ConfigurationError) as info:
        sign(bad, MSG_ID, TS, BODY)
    encoded = bad.removeprefix("whsec_")
    assert not encoded or encoded not in str(info.value)
    with pytest.raises(ConfigurationError):
        verify(BODY, {}, bad, now=TS)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "msg_é"])
def test_sign_rejects_bad_ids(msg_id: str) -> None:
    """msg_id must be printable ASCII without '.', since '.' separates the signed fields."""
    with pytest.raises(ConfigurationError):
        sign(SECRET, msg_id, TS, BODY)


def test_secret_without_prefix_and_webhook_class() -> None:
    """A bare base64 secret signs like its whsec_ form; Webhook wraps sign/verify, hides secrets."""
    assert sign(SECRET.removeprefix("whsec_"), MSG_ID, TS, BODY) == EXPECTED
    hook = Webhook([SECRET])
    headers = hook.headers(MSG_ID, TS, BODY)
    hook.verify(BODY, headers, now=TS)
    assert SECRET not in repr(hook)
    assert signature_headers(SECRET, MSG_ID, TS, BODY)["webhook-signature"] == EXPECTED
    with pytest.raises(ConfigurationError):
        signature_headers([], MSG_ID, TS, BODY)


@pytest.mark.anyio
async def test_example_receiver_verifies_and_dedupes() -> None:
    """The example receiver accepts a signed delivery once, dedupes its retry, rejects forgeries."""
    from examples.webhook_receiver import create_app

    secret = generate_secret()
    handled: list[dict[str, object]] = []

    async def handler(event: dict[str, object]) -> None:
        handled.append(event)

    app = create_app([generate_secret(), secret], handler=handler)
    body = b'{"type":"job.completed","data":{"id":1}}'
    now = int(datetime.now(tz=UTC).timestamp())
    headers = signature_headers([secret], "msg_dup", now, body)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        first = await client.post("/webhooks", content=body, headers=headers)
        retry = await client.post("/webhooks", content=body, headers=headers)
        forged = await client.post("/webhooks", content=body.replace(b"1", b"2"), headers=headers)
    assert (first.status_code, retry.status_code, forged.status_code) == (204, 200, 400)
    assert retry.json() == {"duplicate": True}
    assert handled == [{"type": "job.completed", "data": {"id": 1}}]
