"""scrub runs on every line of the log file (thousands per run), so it caches the secrets' forms and
skips the scan of a pattern the text cannot match. Neither may change what it hides: its output is
compared with the plain implementation it replaced (every form, every pattern, on every text) on
texts mixing secret shapes, near misses, case variants and the non-ASCII letters that regular
expressions' IGNORECASE matches to ASCII ones (the Kelvin sign for k, the long s for s).

Keys and tokens are built at run time: the tree must hold nothing that looks like a real one."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cms_stripe.core import settings as s
from cms_stripe.core.settings import HIDDEN, scrub

ALNUM = string.ascii_letters + string.digits
LIVE = "sk_" + "live_"


def rand(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def reference_scrub(text: object, secrets_: Iterable[str] | None = None) -> str:
    """scrub as it was before its fast path: everything recomputed and every pattern applied."""
    out = str(text)
    values = set(s.known_secrets()) | {v for v in (secrets_ or ()) if v}
    forms: set[str] = set()
    for value in values:
        value = value.strip()
        if len(value) < 6:
            continue
        plain = unquote(value)
        forms |= {value, plain, quote(plain, safe=""), quote(plain, safe="@:/"), quote_plus(plain)}
        if s._JWT.fullmatch(value):
            forms |= {part for part in value.split(".")[1:] if len(part) >= s._MIN_TAIL}
    for form in sorted(forms, key=len, reverse=True):
        out = out.replace(form, HIDDEN)
    out = s._URL_USERINFO.sub(lambda m: m.group(1) + (s._masked_userinfo(m.group(2))) + "@", out)
    out = s._KV_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", out)
    out = s._BEARER.sub(lambda m: f"{m.group(1)} {HIDDEN}", out)
    out = s._HEADER.sub(lambda m: m.group(1) + HIDDEN, out)
    out = s._JWT.sub(lambda m: s.mask_secret(m.group(0)), out)
    out = s._STRIPE_KEY.sub(lambda m: s.mask_secret(m.group(0)), out)
    out = s._SB_KEY.sub(lambda m: s.mask_secret(m.group(0)), out)
    return out


ENV_KEY = "sk_test_" + rand(32)
ENV_PASSWORD = "pW" + rand(12) + "@/"
JWT = "eyJ" + rand(20) + ".eyJ" + rand(24) + "." + rand(30)
# What a pattern keys on, with case variants and the non-ASCII letters IGNORECASE matches to ASCII.
WORDS = [
    "password",
    "PassWord",
    "pa\u017fsword",  # long s: IGNORECASE matches it to s
    "sslpassword",
    "passwd",
    "pwd",
    "\u212aey",  # Kelvin sign: IGNORECASE matches it to k
    "key",
    "KEY",
    "api_key",
    "token",
    "\u212aoken",
    "Access_Token",
    "secret",
    "apikey",
    "X-API-KEY",
    "Authorization",
    "Bearer",
    "BASIC",
    "Ba\u017fic",
    "https",
    "postgresql",
    "user",
    "rows",
    "partition",
]
SEPARATORS = ["=", " = ", ":", ": ", "://", "://app:pw@", "@", " ", "", "'", '"', ", ", "&"]
VALUES = [
    JWT,
    "eyJ",
    LIVE + rand(24),
    "rk_test_" + rand(20),
    "_test_",
    "sb_secret_" + rand(20),
    "sb_",
    ENV_KEY,
    ENV_PASSWORD,
    quote(ENV_PASSWORD, safe=""),
    "db/cms",
    "12",
    "2026-03-02",
    "'quoted value'",
    "\u2026",
    "\u00e9",
]
chunks = st.one_of(
    st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS), st.sampled_from(VALUES)).map("".join),
    st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS), st.text(max_size=6)).map("".join),
    st.sampled_from(VALUES),
    st.text(max_size=6),
)
texts = st.tuples(st.lists(chunks, max_size=4), st.sampled_from([" ", "", "\n", "; "])).map(
    lambda parts: parts[1].join(parts[0])
)


@settings(max_examples=3000, deadline=None)
@example("token=abc", [])
@example("\u212aey=abc", [])
@example("pa\u017fsword: abc", [])
@example("Ba\u017fic abc", [])
@given(texts, st.lists(st.sampled_from(["", "short", "extra-" + rand(12), ENV_KEY]), max_size=2))
def test_scrub_hides_exactly_what_the_plain_implementation_hides(text, extra):
    with_env = {"STRIPE_SECRET_KEY": ENV_KEY, "CMS_DATABASE_URL": f"postgresql://app:{quote(ENV_PASSWORD)}@db/cms"}
    saved = {name: s.os.environ.get(name) for name in with_env}
    s.os.environ.update(with_env)
    try:
        assert scrub(text, extra) == reference_scrub(text, extra)
    finally:
        for name, value in saved.items():
            if value is None:
                s.os.environ.pop(name, None)
            else:
                s.os.environ[name] = value


def test_a_secret_set_after_earlier_scrubs_is_hidden(monkeypatch):
    first, second = "sk_test_" + rand(30), "rk_test_" + rand(30)
    monkeypatch.setenv("STRIPE_SECRET_KEY", first)
    # A bare value (no key shape), known only because the environment holds it.
    monkeypatch.setenv("CMS_DATABASE_URL", "postgresql://app:firstpassword1@db/cms")
    assert "firstpassword1" not in scrub("auth failed for firstpassword1")
    monkeypatch.setenv("CMS_DATABASE_URL", "postgresql://app:secondpassword2@db/cms")
    assert scrub("auth failed for secondpassword2") == f"auth failed for {HIDDEN}"
    assert scrub("auth failed for firstpassword1") == "auth failed for firstpassword1"
    monkeypatch.setenv("STRIPE_SECRET_KEY", second)
    assert second not in scrub(f"key {second}")
