"""Stripe's v1 wire format: form-encoded nested params, JSON object/list shapes, error bodies,
keep-alive, and the `python -m cms_stripe.emulator` entry point."""

from __future__ import annotations

import subprocess
import sys

import requests
import stripe

from .helpers import stripe_error


def test_nested_params_and_expand_through_the_real_client(client: stripe.StripeClient) -> None:
    product = client.v1.products.create(
        params={
            "name": "Poster",
            "metadata": {"cms_id": "p-1", "sku": "AB"},
            "images": ["https://img.example/1.png", "https://img.example/2.png"],
            "default_price_data": {"currency": "usd", "unit_amount": 1299, "recurring": {"interval": "month"}},
            "expand": ["default_price"],
        }
    )
    d = product.to_dict()
    assert d["object"] == "product"
    assert d["metadata"] == {"cms_id": "p-1", "sku": "AB"}
    assert d["images"] == ["https://img.example/1.png", "https://img.example/2.png"]
    assert d["livemode"] is False
    assert set(d) >= {"id", "active", "created", "updated", "description", "url", "unit_label", "tax_code"}
    price = d["default_price"]
    assert price["object"] == "price"
    assert price["unit_amount"] == 1299
    assert price["recurring"]["interval"] == "month"
    assert price["recurring"]["interval_count"] == 1
    assert price["type"] == "recurring"
    assert price["product"] == d["id"]
    # Without expand the default price is an id.
    assert client.v1.products.retrieve(d["id"]).default_price == price["id"]


def test_list_shape_and_expand_inside_lists(client: stripe.StripeClient) -> None:
    client.v1.products.create(params={"name": "A", "default_price_data": {"currency": "eur", "unit_amount": 5}})
    page = client.v1.products.list(params={"expand": ["data.default_price"]})
    d = page.to_dict()
    assert d["object"] == "list"
    assert d["url"] == "/v1/products"
    assert d["has_more"] is False
    assert d["data"][0]["default_price"]["object"] == "price"
    prices = client.v1.prices.list(params={"expand": ["data.product"]}).to_dict()
    assert prices["url"] == "/v1/prices"
    assert prices["data"][0]["product"]["name"] == "A"


def test_unexpandable_property_is_rejected(client: stripe.StripeClient) -> None:
    err = stripe_error(lambda: client.v1.products.create(params={"name": "A", "expand": ["tax_code"]}))
    assert err.http_status == 400
    assert "cannot be expanded" in err.user_message


def test_error_body_shape_and_request_id(emulator) -> None:
    resp = requests.post(
        f"{emulator.url}/v1/products",
        data={"name": "x", "bogus": "1"},
        headers={"Authorization": "Bearer sk_test_x"},
        timeout=5,
    )
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["code"] == "parameter_unknown"
    assert err["param"] == "bogus"
    assert err["message"] == "Received unknown parameter: bogus"
    assert resp.headers["Request-Id"].startswith("req_")


def test_array_brackets_without_index_are_accepted(emulator) -> None:
    resp = requests.post(
        f"{emulator.url}/v1/products",
        data=[("name", "x"), ("images[]", "https://a/1"), ("images[]", "https://a/2"), ("expand[]", "default_price")],
        headers={"Authorization": "Bearer sk_test_x"},
        timeout=5,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["images"] == ["https://a/1", "https://a/2"]


def test_unknown_url_is_404(client: stripe.StripeClient, emulator) -> None:
    resp = requests.get(f"{emulator.url}/v1/customers", headers={"Authorization": "Bearer sk_test_x"}, timeout=5)
    assert resp.status_code == 404
    assert "Unrecognized request URL" in resp.json()["error"]["message"]
    err = stripe_error(lambda: client.v1.products.retrieve("prod_missing"))
    assert err.http_status == 404
    assert err.code == "resource_missing"


def test_keep_alive_connection_is_reused(emulator) -> None:
    with requests.Session() as s:
        for _ in range(20):
            r = s.get(f"{emulator.url}/v1/products", headers={"Authorization": "Bearer sk_test_x"}, timeout=5)
            assert r.status_code == 200
            assert r.headers["Connection"] == "keep-alive"
    # One keep-alive connection served all twenty requests.
    assert emulator.inspect()["connections_opened"] == 1


def test_ids_with_special_characters_round_trip(client: stripe.StripeClient) -> None:
    client.v1.products.create(params={"name": "x", "id": "cms-42_a.b"})
    assert client.v1.products.retrieve("cms-42_a.b").id == "cms-42_a.b"


def test_module_entry_point_prints_its_port_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cms_stripe.emulator", "--port", "0", "--global-rps", "50"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("cms-stripe emulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1].strip()
        client = stripe.StripeClient("sk_test_cli", base_addresses={"api": url})
        assert client.v1.products.create(params={"name": "cli"}).name == "cli"
        info = requests.get(f"{url}/_emulator/inspect", timeout=5).json()
        assert info["config"]["global_rps"] == 50
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
