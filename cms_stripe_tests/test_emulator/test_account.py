"""`GET /v1/account`: a reviewed plan names the account it was read from, so the emulator must name
one — the same for the same state (a restart is the same account), another for other state."""

from __future__ import annotations

import re

from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe.stripe.gateway import StripeGateway

from .helpers import new_client


def test_the_account_is_stable_per_state_file_and_differs_between_them(tmp_path) -> None:
    one, other = str(tmp_path / "one.json"), str(tmp_path / "other.json")
    with EmulatorServer(EmulatorConfig(state_file=one)) as emu:
        first = new_client(emu.url).v1.accounts.retrieve_current()
    with EmulatorServer(EmulatorConfig(state_file=one)) as emu:
        again = new_client(emu.url).v1.accounts.retrieve_current()
    with EmulatorServer(EmulatorConfig(state_file=other)) as emu:
        elsewhere = new_client(emu.url).v1.accounts.retrieve_current()
    assert re.fullmatch(r"acct_[0-9a-f]{16}", first.id)
    assert first.object == "account"
    assert again.id == first.id
    assert elsewhere.id != first.id


def test_a_configured_account_is_served_and_can_change_at_runtime() -> None:
    with EmulatorServer(EmulatorConfig(account_id="acct_1Configured000")) as emu:
        gateway = StripeGateway.from_settings("sk_test_emulator", emu.url)
        assert gateway.retrieve_account()["id"] == "acct_1Configured000"
        emu.configure(account_id="acct_1Swapped000000")
        assert gateway.retrieve_account()["id"] == "acct_1Swapped000000"
        # A read: no write counted, and the request log names the endpoint as Stripe does.
        assert emu.inspect()["writes_total"] == 0
        assert [e["route"] for e in emu.requests_log()] == ["/v1/account", "/v1/account"]
