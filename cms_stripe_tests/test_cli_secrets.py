"""No secret leaves the process: realistic secrets (a Supabase service-role JWT whose signature holds
`_` and `-`, a long random Stripe test key, a database password in the URL) go through
`cms-stripe validate`, `dry-run` and `migrate` on both CMS backends (SQL on PostgreSQL, Supabase REST),
then the console output, every file the tool wrote under its working directory (reports, plans,
backups) and the Dagster instance storage (run config, tags, event log, snapshots; read as bytes and
as SQLite rows, zlib blobs unpacked) are scanned for any 10-character piece of any secret.

The incident this pins down: the old mask printed a service-role key up to its second `_`, which in
a JWT signature is most of the key."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pathlib
import secrets
import sqlite3
import string
import subprocess
import time
import zlib
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.cms.schema import drop_schema
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.postgrest_server import PostgrestTestServer
from cms_stripe_tests.test_cli import run_cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
ANCHOR = datetime(2026, 3, 10, tzinfo=UTC)
PIECE = 10


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_role_jwt() -> str:
    """A Supabase-shaped service-role JWT, built here so the tree holds no token; its signature is
    forced to contain `_` and `-` (the characters the old mask split on)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    now = int(time.time())
    payload = _b64url(
        json.dumps(
            {"iss": "supabase", "ref": "abcdefghij", "role": "service_role", "iat": now, "exp": now + 3600}
        ).encode()
    )
    signature = _b64url(secrets.token_bytes(32))
    signature = signature[:10] + "_" + signature[10:20] + "-" + signature[20:]
    return f"{header}.{payload}.{signature}"


def stripe_test_key() -> str:
    alphabet = string.ascii_letters + string.digits
    return "sk_test_" + "".join(secrets.choice(alphabet) for _ in range(99))


def db_password() -> str:
    # Characters that need URL-encoding, so both the raw and the encoded form must stay hidden.
    return "Pw" + secrets.token_urlsafe(18) + "@:/%?#" + secrets.token_hex(6)


def pieces(secret: str) -> set[str]:
    return {secret[i : i + PIECE] for i in range(len(secret) - PIECE + 1)}


def leaks(blob: bytes, secret_pieces: dict[str, set[str]]) -> list[str]:
    text = blob.decode("utf-8", "replace")
    return sorted({name for name, ps in secret_pieces.items() if any(p in text for p in ps)})


def sqlite_texts(path: pathlib.Path) -> list[bytes]:
    """Every value of every table of a SQLite file, zlib-compressed blobs (Dagster snapshots) unpacked."""
    out: list[bytes] = []
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return out
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes):
                        out.append(value)
                        with contextlib.suppress(zlib.error):
                            out.append(zlib.decompress(value))
                    elif value is not None:
                        out.append(str(value).encode())
    except sqlite3.DatabaseError:
        pass  # not a SQLite file after all; its raw bytes are scanned anyway
    finally:
        conn.close()
    return out


def scan_tree(root: pathlib.Path, secret_pieces: dict[str, set[str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        blobs = [path.read_bytes()]
        if blobs[0][:16] == b"SQLite format 3\x00":
            blobs += sqlite_texts(path)
        hit = sorted({name for blob in blobs for name in leaks(blob, secret_pieces)})
        if hit:
            found[str(path.relative_to(root))] = hit
    return found


def base_env(work: pathlib.Path, stripe_key: str, api_base: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MIGRATION_", "STRIPE_", "SUPABASE_", "CMS_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        {
            # Everything the tool writes lands under the working directory: the embedded instance
            # (./.dagster_home), reports (./reports), REST backups (./.cms_stripe/backups).
            "DAGSTER_HOME": str(work / ".dagster_home"),
            # Surrounding whitespace, as a pasted key often has: it must be trimmed, and still hidden.
            "STRIPE_SECRET_KEY": f"  {stripe_key}\n",
            "STRIPE_API_BASE": api_base,
            "MIGRATION_STRATEGY": "incremental",
            "MIGRATION_START_DATE": "2026-03-07",
            "MIGRATION_END_DATE": "2026-03-10",
        }
    )
    (work / ".dagster_home").mkdir(parents=True, exist_ok=True)
    (work / ".dagster_home" / "dagster.yaml").touch()
    return env


def run_workflow(env: dict[str, str], work: pathlib.Path) -> list[subprocess.CompletedProcess]:
    results = [
        run_cli(["validate"], env, work),
        run_cli(["dry-run"], env, work),
        run_cli(["migrate"], {**env, "MIGRATION_DRY_RUN": "false"}, work),
    ]
    for r, name in zip(results, ("validate", "dry-run", "migrate"), strict=True):
        assert r.returncode == 0, f"{name} failed:\n{(r.stdout + r.stderr)[-4000:]}"
    return results


@pytest.fixture()
def demo_products():
    demo = generate_catalog(40, seed=9, anchor=ANCHOR, days=3)
    return demo


def assert_nothing_leaked(results, work: pathlib.Path, secrets_by_name: dict[str, str]) -> None:
    secret_pieces = {name: pieces(value) for name, value in secrets_by_name.items()}
    for name, value in list(secrets_by_name.items()):
        secret_pieces[f"{name} (url-encoded)"] = pieces(quote(value, safe=""))
    console = "\n".join(r.stdout + r.stderr for r in results).encode()
    assert leaks(console, secret_pieces) == [], "a secret reached the console"
    written = scan_tree(work, secret_pieces)
    assert written == {}, f"a secret reached files the tool wrote: {written}"
    # The scan saw what it had to: the instance storage, the reports and the plans.
    files = {p.name for p in work.rglob("*") if p.is_file()}
    assert any(name.endswith(".db") for name in files), files
    assert any(name.startswith("plan-") for name in files), files
    assert any(name.startswith("reconciliation-") for name in files), files


def test_sql_backend_on_postgres_with_a_password_in_the_url(tmp_path, pg_database, pg_engine, demo_products):
    drop_schema(pg_engine)
    write_catalog(pg_engine, demo_products.products)
    password = db_password()
    # The local server trusts 127.0.0.1, so any password connects; what matters is where it shows up.
    url = sa.engine.make_url(pg_database).set(password=password).render_as_string(hide_password=False)
    assert quote(password, safe="") in url or password in url
    stripe_key = stripe_test_key()
    work = tmp_path / "work"
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = {**base_env(work, stripe_key, emulator.url), "CMS_DATABASE_URL": url}
        results = run_workflow(env, work)
        assert emulator.inspect()["writes_total"] > 0  # migrate really wrote, with the trimmed key
        # A CMS that cannot be reached: the driver's error text is shown, the password is not.
        unreachable = url.replace(sa.engine.make_url(pg_database).host or "127.0.0.1", "127.0.0.1:1", 1)
        down = run_cli(["validate"], {**env, "CMS_DATABASE_URL": unreachable}, work)
        assert down.returncode == 2 and "CMS" in down.stderr
    assert "configuration:" in results[0].stdout
    assert "CMS_DATABASE_URL = postgresql+psycopg://postgres:***@" in results[0].stdout
    assert f"STRIPE_SECRET_KEY = sk_test_…{stripe_key[-4:]}" in results[0].stdout
    assert_nothing_leaked([*results, down], work, {"stripe key": stripe_key, "db password": password})


def test_rest_backend_with_a_service_role_jwt(tmp_path, pg_database, pg_engine, demo_products):
    drop_schema(pg_engine)
    write_catalog(pg_engine, demo_products.products)
    jwt = service_role_jwt()
    stripe_key = stripe_test_key()
    work = tmp_path / "work"
    with EmulatorServer(EmulatorConfig()) as emulator, PostgrestTestServer(pg_database, jwt) as server:
        env = {
            **base_env(work, stripe_key, emulator.url),
            "SUPABASE_URL": server.url,
            "SUPABASE_SERVICE_ROLE_KEY": f" {jwt} ",
        }
        results = run_workflow(env, work)
        assert emulator.inspect()["writes_total"] > 0
        assert any(r.method == "POST" or r.method == "PATCH" for r in server.requests)  # write-back happened
        # A wrong key: the server's 401 travels through supabase-py's error, the real key must not.
        wrong = run_cli(["dry-run"], {**env, "SUPABASE_SERVICE_ROLE_KEY": jwt[:-6] + "AbCdEf"}, work)
        assert wrong.returncode != 0
    signature = jwt.rsplit(".", 1)[1]
    assert "_" in signature and "-" in signature
    assert f"SUPABASE_SERVICE_ROLE_KEY = eyJ…(service role)…{jwt[-4:]}" in results[0].stdout
    assert list((work / ".cms_stripe" / "backups").rglob("*.json")), "REST backups are scanned too"
    # Only the signature is secret in a JWT's sense, but no 10 characters of the whole token may show.
    assert_nothing_leaked([*results, wrong], work, {"stripe key": stripe_key, "service role key": jwt})


def test_the_scan_finds_a_piece_hidden_in_a_compressed_sqlite_blob(tmp_path):
    """The scan itself can fail: a piece of a secret inside a zlib blob of a SQLite table is found."""
    secret = stripe_test_key()
    db = tmp_path / "storage.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE snapshots (body BLOB)")
    conn.execute("INSERT INTO snapshots VALUES (?)", (zlib.compress(f"config {secret[30:41]} end".encode()),))
    conn.commit()
    conn.close()
    (tmp_path / "clean.txt").write_text(f"sk_test_…{secret[-4:]}")
    assert scan_tree(tmp_path, {"stripe key": pieces(secret)}) == {"storage.db": ["stripe key"]}
