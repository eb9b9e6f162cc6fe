"""The application's side: proxy answers, subscription tokens, webhook signatures."""

from __future__ import annotations

import json
import time

import jwt
import pytest

from wsguard_client import (
    ConnectRequest,
    ConnectResult,
    Disconnect,
    InvalidSignature,
    PublishResult,
    RefreshResult,
    Refuse,
    RpcResult,
    SubscribeResult,
    make_subscription_token,
    sign_webhook,
    verify_webhook,
)

SECRET = "f" * 64


def test_results_answer_in_centrifugos_proxy_format() -> None:
    assert ConnectResult("alice").answer() == {"result": {"user": "alice"}}
    assert ConnectResult("alice", expire_at=10, data={"a": 1}).answer() == {
        "result": {"user": "alice", "expire_at": 10, "data": {"a": 1}}
    }
    assert RefreshResult(expire_at=20).answer() == {"result": {"expire_at": 20}}
    assert RefreshResult(expired=True).answer() == {"result": {"expired": True}}
    assert SubscribeResult().answer() == {"result": {}}
    assert SubscribeResult(data=None, expire_at=5).answer() == {"result": {"expire_at": 5}}
    assert PublishResult().answer() == {"result": {}}
    assert PublishResult(data=None).answer() == {"result": {"data": None}}, "null is data too"
    assert RpcResult({"x": 1}).answer() == {"result": {"data": {"x": 1}}}
    assert Refuse(4031, "no").answer() == {"error": {"code": 4031, "message": "no"}}
    assert Disconnect(4501, "bye").answer() == {"disconnect": {"code": 4501, "reason": "bye"}}
    with pytest.raises(ValueError):
        Disconnect(1000, "not a disconnect code")


def test_requests_are_read_from_wsguards_bodies() -> None:
    body = {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json"}
    call = ConnectRequest.from_json({**body, "name": "js", "data": {"page": 1}})
    assert (call.info.client, call.name, call.version, call.data) == ("c1", "js", "", {"page": 1})
    with pytest.raises(ValueError):
        ConnectRequest.from_json({**body, "client": 7})


def test_a_subscription_token_names_its_user_channel_and_expiry() -> None:
    token = make_subscription_token(SECRET, "alice", "doc:1", 60, issuer="https://app/")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="https://app/")
    assert (claims["sub"], claims["channel"]) == ("alice", "doc:1")
    assert abs(claims["exp"] - (time.time() + 60)) < 5
    assert "expire_at" not in claims
    forever = make_subscription_token(SECRET, "alice", "doc:1", 60, expire_at=0)
    assert jwt.decode(forever, SECRET, algorithms=["HS256"])["expire_at"] == 0
    with pytest.raises(ValueError):
        make_subscription_token("short", "alice", "doc:1", 60)
    with pytest.raises(ValueError):
        make_subscription_token(SECRET, "alice", "doc:1", 0)


def test_webhook_signatures_are_hex_hmac_sha256_of_the_body() -> None:
    # RFC 4231, test case 6: a key longer than the block size.
    key = bytes([0xAA]) * 131
    data = b"Test Using Larger Than Block-Size Key - Hash Key First"
    expected = "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    assert sign_webhook(data, key) == expected

    body = json.dumps({"time_ms": 1, "events": [{"name": "channel_occupied", "channel": "a"}]})
    signature = sign_webhook(body.encode(), SECRET)
    payload = verify_webhook(body.encode(), signature, SECRET)
    assert payload["events"][0]["name"] == "channel_occupied"
    assert verify_webhook(body.encode(), signature.upper(), SECRET) == payload
    for bad in (None, "", "00" * 32, signature[:-1]):
        with pytest.raises(InvalidSignature):
            verify_webhook(body.encode(), bad, SECRET)
    with pytest.raises(InvalidSignature):
        verify_webhook(body.encode() + b" ", signature, SECRET)
    with pytest.raises(ValueError):
        verify_webhook(b"[]", sign_webhook(b"[]", SECRET), SECRET)
