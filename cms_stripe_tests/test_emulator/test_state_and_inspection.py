"""State survives a restart (state file); inspection, object dump, request log and reset over HTTP."""

from __future__ import annotations

import contextlib
import json
import time

import requests
import stripe

from cms_stripe.emulator import EmulatorConfig, EmulatorServer

from .helpers import new_client, stripe_error


def test_state_survives_restart(tmp_path) -> None:
    state = str(tmp_path / "stripe-state.json")
    cfg = EmulatorConfig(state_file=state, enforce_rate_limits=False)
    with EmulatorServer(cfg) as emu:
        client = new_client(emu.url)
        product = client.v1.products.create(
            params={"name": "x", "id": "cms_1", "default_price_data": {"currency": "usd", "unit_amount": 5}},
            options={"idempotency_key": "persist"},
        )
        client.v1.prices.create(params={"product": "cms_1", "currency": "eur", "unit_amount": 7, "lookup_key": "lk"})
        later = client.v1.products.create(params={"name": "later"})
    with EmulatorServer(cfg) as emu:
        client = new_client(emu.url)
        assert client.v1.products.retrieve("cms_1").default_price == product.default_price
        # Order, lookup keys and idempotency keys survive as well.
        assert [p.id for p in client.v1.products.list().data] == [later.id, "cms_1"]
        assert client.v1.prices.list(params={"lookup_keys": ["lk"]}).data[0].unit_amount == 7
        replay = client.v1.products.create(
            params={"name": "x", "id": "cms_1", "default_price_data": {"currency": "usd", "unit_amount": 5}},
            options={"idempotency_key": "persist"},
        )
        assert replay.id == "cms_1"
        assert emu.inspect()["idempotent_replays"] == 1


def test_inspect_counts(emulator, client: stripe.StripeClient) -> None:
    p = client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "i"})
    client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "i"})
    client.v1.products.retrieve(p.id)
    with contextlib.suppress(stripe.InvalidRequestError):
        client.v1.products.retrieve("nope")
    info = requests.get(f"{emulator.url}/_emulator/inspect", timeout=5).json()
    assert info["requests"] == {"POST /v1/products": 2, "GET /v1/products/:id": 2}
    assert info["status_codes"] == {"200": 3, "404": 1}
    assert info["status_codes_by_endpoint"]["GET /v1/products/:id"] == {"200": 1, "404": 1}
    assert info["idempotent_replays"] == 1
    assert info["writes"] == {"POST /v1/products": 1}
    assert info["objects"]["products"] == 1
    assert info["peak_rps"]["global"] == 4
    assert info["peak_rps"]["endpoints"]["POST /v1/products"] == 2
    assert set(info) >= {"rate_limited", "faults", "peak_admitted_rps", "config"}


def test_objects_dump_request_log_and_reset(emulator, client: stripe.StripeClient) -> None:
    client.v1.products.create(
        params={"name": "x", "default_price_data": {"currency": "usd", "unit_amount": 5}},
        options={"idempotency_key": "log"},
    )
    dump = requests.get(f"{emulator.url}/_emulator/objects", timeout=5).json()
    assert [p["name"] for p in dump["products"]] == ["x"]
    assert dump["prices"][0]["unit_amount"] == 5
    log = requests.get(f"{emulator.url}/_emulator/requests", timeout=5).json()["requests"]
    assert len(log) == 1
    entry = log[0]
    assert (entry["method"], entry["route"], entry["path"], entry["status"]) == (
        "POST",
        "/v1/products",
        "/v1/products",
        200,
    )
    assert entry["idempotency_key"] == "log"
    assert entry["applied"] is True
    assert entry["end"] >= entry["start"]
    assert requests.post(f"{emulator.url}/_emulator/reset", timeout=5).status_code == 200
    assert requests.get(f"{emulator.url}/_emulator/objects", timeout=5).json()["products"] == []
    info = emulator.inspect()
    assert info["requests_total"] == 0
    assert info["objects"]["idempotency_keys"] == 0


def test_configure_over_http(emulator) -> None:
    r = requests.post(
        f"{emulator.url}/_emulator/config", json={"latency_ms": 5, "faults": {"rate_429": 0.5}}, timeout=5
    )
    assert r.status_code == 200
    assert emulator.inspect()["config"]["faults"]["rate_429"] == 0.5
    bad = requests.post(f"{emulator.url}/_emulator/config", json={"nope": 1}, timeout=5)
    assert bad.status_code == 400


def test_state_file_survives_a_sigterm_restart_of_the_cli(tmp_path) -> None:
    from cms_stripe.emulator.bench import emulator_process

    state = str(tmp_path / "cli-state.json")
    with emulator_process("--state-file", state) as url:
        new_client(url).v1.products.create(params={"name": "kept", "id": "cms_kept"})
    with emulator_process("--state-file", state) as url:
        assert new_client(url).v1.products.retrieve("cms_kept").name == "kept"


def test_a_version_1_state_file_written_by_hand_loads(tmp_path) -> None:
    """The state file's format is the contract between runs: objects, creation order, deleted ids and
    idempotency records written literally here must come back as the emulator's account."""
    product = {
        "id": "cms_old",
        "object": "product",
        "active": True,
        "created": 1700000000,
        "default_price": "price_old",
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": {"cms_id": "old"},
        "name": "Old poster",
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": 1700000000,
        "url": None,
    }
    price = {
        "id": "price_old",
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": 1700000000,
        "currency": "usd",
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": "old_lk",
        "metadata": {},
        "nickname": None,
        "product": "cms_old",
        "recurring": None,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time",
        "unit_amount": 1500,
        "unit_amount_decimal": "1500",
    }
    newer = {**product, "id": "cms_newer", "name": "Newer", "default_price": None, "metadata": {}}
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "version": 1,
                "products": [newer, product],
                "prices": [price],
                "seq": {"cms_old": 1, "price_old": 2, "cms_newer": 3},
                "next_seq": 4,
                "deleted_products": ["cms_gone"],
                "idempotency": [
                    {
                        "scope": "sk_test_emulator",
                        "key": "old-key",
                        "fingerprint": "not-the-fingerprint-of-any-request",
                        "status": 200,
                        "body": json.dumps(product),
                        "created": time.time(),
                    }
                ],
            }
        )
    )
    with EmulatorServer(EmulatorConfig(state_file=str(state), enforce_rate_limits=False)) as emu:
        client = new_client(emu.url)
        assert client.v1.products.retrieve("cms_old").to_dict() == product
        assert [p.id for p in client.v1.products.list().data] == ["cms_newer", "cms_old"]  # by seq, not file order
        assert [p.id for p in client.v1.prices.list(params={"lookup_keys": ["old_lk"]}).data] == ["price_old"]
        assert [p.id for p in client.v1.prices.list(params={"product": "cms_old"}).data] == ["price_old"]
        err = stripe_error(lambda: client.v1.products.create(params={"name": "again", "id": "cms_gone"}))
        assert err.code == "resource_already_exists"
        err = stripe_error(
            lambda: client.v1.products.create(params={"name": "x"}, options={"idempotency_key": "old-key"}),
            stripe.IdempotencyError,
        )
        assert err.http_status == 400
        assert emu.inspect()["objects"] == {
            "products": 2,
            "prices": 1,
            "active_products": 2,
            "active_prices": 1,
            "idempotency_keys": 1,
        }
