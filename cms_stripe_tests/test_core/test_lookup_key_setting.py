"""STRIPE_PRICE_LOOKUP_KEYS: off unless set, parsed like every other boolean setting, shown by describe()."""

from __future__ import annotations

import pytest

from cms_stripe.core.settings import Settings, SettingsError, price_lookup_keys


def test_off_by_default() -> None:
    assert Settings.from_env({}).price_lookup_keys is False
    assert price_lookup_keys({}) is False
    assert Settings.from_env({}).describe()["STRIPE_PRICE_LOOKUP_KEYS"] == "false"


@pytest.mark.parametrize(("raw", "want"), [("true", True), ("1", True), ("on", True), ("false", False), ("0", False)])
def test_read_from_the_environment(raw: str, want: bool) -> None:
    env = {"STRIPE_PRICE_LOOKUP_KEYS": raw}
    assert Settings.from_env(env).price_lookup_keys is want
    assert price_lookup_keys(env) is want
    assert Settings.from_env(env).describe()["STRIPE_PRICE_LOOKUP_KEYS"] == str(want).lower()


def test_a_typo_is_refused_with_the_name() -> None:
    with pytest.raises(SettingsError, match="STRIPE_PRICE_LOOKUP_KEYS"):
        Settings.from_env({"STRIPE_PRICE_LOOKUP_KEYS": "sometimes"})
