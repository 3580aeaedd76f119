"""Masking, scrubbing and the safety switches: one mask for everything shown (public prefix + last
four, never more), URLs without passwords (also with an unencoded `@` or a keyword DSN), exception
text scrubbed of every secret shape, a blank MIGRATION_DRY_RUN that stays a dry run, and one
live-key rule (anything not clearly a test key, after trimming, is live).

Keys and tokens are built at run time: the tree must hold nothing that looks like a real one."""

from __future__ import annotations

import base64
import json
import secrets
import string
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cms_stripe.core.settings import (
    HIDDEN,
    ScrubbedError,
    Settings,
    SettingsError,
    is_live_key,
    known_secrets,
    mask_secret,
    mask_url,
    scrub,
    scrubbed_exception,
)
from cms_stripe.stripe.limits import LIVE_GLOBAL_RPS, TEST_GLOBAL_RPS, LimitModel

ALNUM = string.ascii_letters + string.digits
LIVE = "sk_" + "live_"  # split so no literal live key prefix + tail sits in the tree


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def jwt(role: str | None = "service_role", tail: str = "x_Q2") -> str:
    claims = {"iss": "supabase", "ref": rand(20).lower()}
    if role is not None:
        claims["role"] = role
    signature = rand(20) + "_" + rand(10) + "-" + rand(6) + tail
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims)}.{signature}"


def no_piece(secret: str, text: str, size: int = 10) -> bool:
    return not any(secret[i : i + size] in text for i in range(len(secret) - size + 1))


# -- mask_secret -----------------------------------------------------------------------------------


def test_stripe_keys_show_prefix_and_last_four():
    tail = rand(40) + "9f3a"
    assert mask_secret(LIVE + tail) == LIVE + "…9f3a"
    assert mask_secret("rk_test_" + tail) == "rk_test_…9f3a"
    assert mask_secret(f"  sk_test_{tail}\n") == "sk_test_…9f3a"  # trimmed first


def test_a_short_key_shows_only_its_prefix():
    assert mask_secret("sk_test_abc1234") == "sk_test_…"
    assert mask_secret("short-secret") == HIDDEN
    assert mask_secret(None) == mask_secret("  ") == "(not set)"


def test_service_role_jwt_shows_its_role_and_last_four():
    token = jwt()
    assert mask_secret(token) == "eyJ…(service role)…x_Q2"
    assert mask_secret(jwt("anon", tail="Ab-9")) == "eyJ…(anon)…Ab-9"
    assert mask_secret(jwt(None, tail="zzzz")) == "eyJ…(JWT)…zzzz"
    # A role claim that is not a plain word is not echoed (it could carry anything).
    assert mask_secret(jwt("x" * 5 + " <script>", tail="abcd")) == "eyJ…(JWT)…abcd"


@settings(max_examples=200)
@given(st.text(alphabet=ALNUM + "_-", min_size=20, max_size=120))
def test_no_mask_shows_ten_characters_of_a_secret(tail):
    for value in (LIVE + tail, "rk_test_" + tail, tail, jwt(tail=tail[-4:]) + tail):
        shown = mask_secret(value)
        assert no_piece(value.strip(), shown), (value, shown)
        assert len(shown) <= 40


# -- mask_url ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://postgres:s3cret@db.example:5432/cms",
            "postgresql+psycopg://postgres:***@db.example:5432/cms",
        ),
        # An unencoded @ and / in the password: the userinfo ends at the LAST @.
        ("postgresql://app:p@ss/w:rd@db.example/cms", "postgresql://app:***@db.example/cms"),
        ("https://user:pw@project.supabase.co", "https://user:***@project.supabase.co"),
        ("https://token-only@proxy.example/v1", "https://***@proxy.example/v1"),
        ("https://project.supabase.co", "https://project.supabase.co"),
        ("sqlite:///cms.sqlite", "sqlite:///cms.sqlite"),
        (
            "postgresql://db.example/cms?sslmode=require&password=hunter22",
            "postgresql://db.example/cms?sslmode=require&password=***",
        ),
        ("host=db.example user=app password=hunter22 dbname=cms", "host=db.example user=app password=*** dbname=cms"),
        ("host=db.example password='two words' port=5432", "host=db.example password=*** port=5432"),
        ("not a url at all", HIDDEN),
        ("   ", "(not set)"),
    ],
)
def test_urls_lose_their_password(url, shown):
    assert mask_url(url) == shown


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=40))
def test_any_password_is_hidden_in_a_database_url(password):
    url = f"postgresql+psycopg://app:{password}@db.example:5432/cms"
    assert mask_url(url) == "postgresql+psycopg://app:***@db.example:5432/cms"
    encoded = f"postgresql+psycopg://app:{quote(password, safe='')}@db.example:5432/cms"
    assert mask_url(encoded) == "postgresql+psycopg://app:***@db.example:5432/cms"


# -- scrub ---------------------------------------------------------------------------------------------


def test_scrub_removes_every_secret_shape(monkeypatch):
    for name in (
        "STRIPE_SECRET_KEY",
        "SUPABASE_SERVICE_ROLE_KEY",
        "CMS_DATABASE_URL",
        "SUPABASE_URL",
        "STRIPE_API_BASE",
    ):
        monkeypatch.delenv(name, raising=False)
    token, key, password = jwt(), "sk_test_" + rand(40), "pw" + rand(16)
    unknown_key = "rk_test_" + rand(30)
    text = (
        f"connect failed: postgresql://app:{password}@db:5432/cms; "
        f"headers={{'apikey': '{token}', 'Authorization': 'Bearer {token}'}} "
        f"key={key} other={unknown_key} dsn: host=db password={password} "
        f"encoded {quote(password + '@x', safe='')}"
    )
    out = scrub(text, [key, password])
    for secret in (token, key, password, unknown_key):
        assert no_piece(secret, out), (secret, out)
    assert "postgresql://app:***@db:5432/cms" in out and "'Authorization': '(hidden)'" in out
    assert scrub("GET /rest/v1/products Authorization: Bearer abc.def.ghi") == (
        "GET /rest/v1/products Authorization: (hidden)"
    )
    assert scrub("retry with Bearer abc.def.ghi") == "retry with Bearer (hidden)"


def test_scrub_knows_the_secrets_of_the_environment(monkeypatch):
    key, password, token = "sk_test_" + rand(50), "Pw" + rand(20) + "@/", jwt()
    monkeypatch.setenv("STRIPE_SECRET_KEY", f" {key} ")
    monkeypatch.setenv("CMS_DATABASE_URL", f"postgresql://app:{quote(password, safe='')}@db/cms")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", token)
    assert set(known_secrets()) >= {key, token, quote(password, safe="")}
    # A secret quoted bare (not in a URL, not shaped like a key) is still found by its value.
    bare = token.split(".")[2]
    out = scrub(f"signature {bare} in {token} and {quote(password, safe='')}")
    assert no_piece(bare, out) and no_piece(token, out) and no_piece(password, out)
    # Drivers quote a URL's password decoded: that form is known too.
    assert no_piece(password, scrub(f"password authentication failed ({password})"))


def test_a_database_user_without_password_is_not_a_secret_but_a_bare_url_token_is(monkeypatch):
    # Trust or peer auth: postgresql://postgres@host names a user, which must not be cut out of every
    # word that holds it (the console printed "SQL (hidden)ql+psycopg://...").
    monkeypatch.setenv("CMS_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/shop")
    monkeypatch.setenv("SUPABASE_URL", "https://tok3n" + "Q" * 20 + "@project.example")
    assert known_secrets() == ["tok3n" + "Q" * 20]
    assert scrub("driver postgresql+psycopg, database postgres") == "driver postgresql+psycopg, database postgres"
    assert scrub("token tok3n" + "Q" * 20 + " seen") == "token (hidden) seen"


def test_scrubbed_exception_cuts_a_chain_that_holds_a_password(monkeypatch):
    monkeypatch.delenv("CMS_DATABASE_URL", raising=False)
    password = "Pw" + rand(20)

    class DriverError(Exception):
        def __init__(self, message: str, code: int) -> None:
            super().__init__(message)

    try:
        try:
            raise DriverError(f"could not connect to postgresql://app:{password}@db/cms", 7)
        except DriverError as inner:
            raise RuntimeError("CMS unreachable") from inner
    except RuntimeError as exc:
        clean = scrubbed_exception(exc)
    assert type(clean) is RuntimeError and password not in str(clean)
    assert "postgresql://app:***@db/cms" in str(clean) and "DriverError" in str(clean)
    plain = ValueError("nothing secret here")
    assert scrubbed_exception(plain) is plain

    class NeedsTwo(Exception):
        def __init__(self, a: str, b: str) -> None:
            super().__init__(a, b)

    assert isinstance(scrubbed_exception(NeedsTwo(f"Bearer {password}", "x")), ScrubbedError)


# -- MIGRATION_DRY_RUN and friends -------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, "", " ", "\t\n", "  \r\n"])
def test_unset_or_blank_dry_run_is_a_dry_run(raw):
    env = {} if raw is None else {"MIGRATION_DRY_RUN": raw}
    assert Settings.from_env(env).dry_run is True


@pytest.mark.parametrize(
    ("raw", "dry"),
    [
        ("true", True),
        ("TRUE", True),
        (" Yes ", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("\tFALSE\n", False),
    ],
)
def test_dry_run_spellings(raw, dry):
    assert Settings.from_env({"MIGRATION_DRY_RUN": raw}).dry_run is dry


@pytest.mark.parametrize("raw", ["maybe", "on", "off", "y", "n", "tru", "fals e", "2", "-1", "none", "null"])
def test_any_other_dry_run_value_is_an_error(raw):
    with pytest.raises(SettingsError, match="MIGRATION_DRY_RUN"):
        Settings.from_env({"MIGRATION_DRY_RUN": raw})


def test_allow_live_is_as_strict_and_blank_means_not_allowed():
    assert Settings.from_env({"MIGRATION_ALLOW_LIVE": " "}).allow_live is False
    with pytest.raises(SettingsError, match="MIGRATION_ALLOW_LIVE"):
        Settings.from_env({"MIGRATION_ALLOW_LIVE": "on"})


# -- the one live-key rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "live"),
    [
        ("sk_test_" + "a" * 30, False),
        ("  rk_test_" + "a" * 30 + "\n", False),
        (" " + LIVE + "a" * 30, True),
        ("\t" + "rk_" + "live_" + "a" * 30 + " ", True),
        ("pk_test_" + "a" * 30, True),  # not a secret key at all: not clearly a test key
        ("SK_TEST_" + "a" * 30, True),
        ("sk_tst_" + "a" * 30, True),
        ("", True),
        (None, True),
    ],
)
def test_anything_not_clearly_a_test_key_is_live(key, live):
    assert is_live_key(key) is live


def test_keys_are_trimmed_when_read_and_unknown_keys_get_the_test_budget():
    key = "sk_test_" + rand(30)
    s = Settings.from_env({"STRIPE_SECRET_KEY": f"  {key}\n", "SUPABASE_SERVICE_ROLE_KEY": " k " * 1})
    assert s.stripe_secret_key == key and s.supabase_service_role_key == "k" and not s.live_key
    assert Settings.from_env({"STRIPE_SECRET_KEY": " " + LIVE + rand(30)}).live_key
    # Guarded as live, paced as test: an unplaceable key must not get the live account's budget.
    odd = LimitModel.for_key("sk_unknown_" + rand(20))
    assert odd.live and odd.global_rps == TEST_GLOBAL_RPS
    assert LimitModel.for_key(" " + LIVE + rand(20)).global_rps == LIVE_GLOBAL_RPS
