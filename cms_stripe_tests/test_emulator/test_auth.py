"""Authentication: a sk_/rk_ test or live secret key is required."""

from __future__ import annotations

import base64

import pytest
import requests
import stripe

from .helpers import new_client, stripe_error


@pytest.mark.parametrize("key", ["sk_test_abc123", "rk_test_abc123", "sk_live_abc123", "rk_live_abc123"])
def test_secret_and_restricted_keys_are_accepted(emulator, key: str) -> None:
    product = new_client(emulator.url, key).v1.products.create(params={"name": "x"})
    assert product.livemode is key.split("_")[1].startswith("live")


@pytest.mark.parametrize("key", ["pk_test_abc123", "sk_prod_abc123", "sk_test_", "garbage", "sk_test_abc def"])
def test_other_keys_are_401(emulator, key: str) -> None:
    err = stripe_error(lambda: new_client(emulator.url, key).v1.products.list(), stripe.AuthenticationError)
    assert err.http_status == 401
    assert "Invalid API Key" in err.user_message or "Invalid authorization" in err.user_message


def test_missing_key_is_401_and_nothing_is_written(emulator) -> None:
    r = requests.post(f"{emulator.url}/v1/products", data={"name": "x"}, timeout=5)
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in r.json()["error"]["message"]
    assert emulator.inspect()["objects"]["products"] == 0


def test_basic_auth_with_key_as_username(emulator) -> None:
    token = base64.b64encode(b"sk_test_basic:").decode()
    r = requests.get(f"{emulator.url}/v1/products", headers={"Authorization": f"Basic {token}"}, timeout=5)
    assert r.status_code == 200
    assert r.json()["object"] == "list"


def test_inspection_endpoints_need_no_auth(emulator) -> None:
    assert requests.get(f"{emulator.url}/_emulator/inspect", timeout=5).status_code == 200
    assert requests.get(f"{emulator.url}/_emulator/objects", timeout=5).status_code == 200
