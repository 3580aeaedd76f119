"""Run config (what the Launchpad sends) cannot redirect a run: every resource field that used to hold
an address or a folder (Stripe API base, CMS database URL, Supabase URL and key, backup folder,
mapping file, table, reports folder, the IO manager's base_dir) is tried, with the keys still
flowing from their environment variables (`{"env": ...}`), and the run is refused; a listener on
another port receives no connection and a planted folder is neither read (its pickle would leave a
marker when loaded) nor written.

The incident: a field given an EnvVar still accepts `{"env": "NAME"}` in run config, so a user could
keep the key flowing while pointing the API base at their own host."""

from __future__ import annotations

import pathlib
import pickle
import socket
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from cms_stripe.definitions import all_assets
from cms_stripe.jobs import SYNC_JOB, all_jobs
from cms_stripe.resources.cms import SupabaseCatalogResource
from cms_stripe_tests.test_assets.conftest import DAYS, make_resources


class _Marker:
    """Unpickling this touches a file: proof that a pickle from the planted folder was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


@pytest.fixture()
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def connections(sock: socket.socket) -> int:
    """Connections the kernel completed on the listener (they wait in the backlog; no thread, no sleep)."""
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


@pytest.fixture()
def other(tmp_path) -> pathlib.Path:
    root = tmp_path / "other"
    marker = tmp_path / "UNPICKLED"
    for day in DAYS:
        for asset in ("raw_cms_products", "validated_products"):
            path = root / "frames" / asset / f"{day}.pkl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(_Marker(str(marker))))
    (root / "mapping.json").write_text('{"columns": {"title": "name"}}')
    return root


def snapshot(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def attacks(port: int, other: pathlib.Path) -> list[tuple[str, dict[str, Any]]]:
    base = f"http://127.0.0.1:{port}"
    return [
        ("stripe", {"api_base": base, "api_key": {"env": "STRIPE_SECRET_KEY"}}),
        ("stripe", {"api_base": base}),
        ("catalog", {"database_url": f"postgresql+psycopg://postgres:x@127.0.0.1:{port}/cms"}),
        ("catalog", {"database_url": {"env": "CMS_DATABASE_URL"}, "table": "other_products"}),
        ("catalog", {"url": base, "service_role_key": {"env": "SUPABASE_SERVICE_ROLE_KEY"}}),
        ("catalog", {"backup_dir": str(other)}),
        ("catalog", {"mapping_file": str(other / "mapping.json")}),
        ("settings", {"dry_run": False, "reports_dir": str(other)}),
        ("frames_io_manager", {"base_dir": str(other)}),
    ]


def run(job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: dict[str, Any]) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(run_config=run_config, instance=instance, partition_key=DAYS[1], raise_on_error=False)


def test_run_config_cannot_point_a_run_elsewhere(cms_url, catalog, emulator, instance, tmp_path, listener, other):
    defs = dg.Definitions(assets=all_assets, jobs=all_jobs, resources=make_resources(cms_url, emulator, tmp_path))
    job = defs.resolve_job_def(SYNC_JOB)
    planted = snapshot(other)
    port = listener.getsockname()[1]
    for resource, config in attacks(port, other):
        with pytest.raises(dg.DagsterInvalidConfigError) as refused:
            run(job, instance, {"resources": {resource: {"config": config}}})
        field = next(k for k in config if k != "dry_run" and k != "api_key" and k != "service_role_key")
        assert field in str(refused.value), str(refused.value)[:500]
    assert connections(listener) == 0
    assert emulator.inspect()["requests_total"] == 0
    assert snapshot(other) == planted and not (tmp_path / "UNPICKLED").exists()

    # The control: the same job without the overrides runs, with the folders of the environment.
    ok = run(job, instance, {})
    assert ok.success
    assert list((tmp_path / "frames").rglob("*.pkl")) and list((tmp_path / "reports").glob("*.json"))
    assert connections(listener) == 0
    assert snapshot(other) == planted and not (tmp_path / "UNPICKLED").exists()


def test_supabase_resource_cannot_be_pointed_elsewhere(instance, tmp_path, listener, other, resource_env):
    """The REST resource has no address field either: a run config URL is refused before any request
    (the environment points at a closed port, so a run that got through would fail, not connect)."""
    resource_env.setenv("SUPABASE_URL", "http://127.0.0.1:1")
    resource_env.setenv("SUPABASE_SERVICE_ROLE_KEY", "service-role-for-the-redirect-test")
    resource_env.setenv("CMS_BACKUP_DIR", str(tmp_path / "backups"))
    resource_env.delenv("CMS_DATABASE_URL", raising=False)

    @dg.asset
    def probe(catalog: dg.ResourceParam[Any]) -> None:
        catalog.check()

    port = listener.getsockname()[1]
    for config in (
        {"url": f"http://127.0.0.1:{port}", "service_role_key": {"env": "SUPABASE_SERVICE_ROLE_KEY"}},
        {"backup_dir": str(other)},
    ):
        with pytest.raises(dg.DagsterInvalidConfigError):
            dg.materialize(
                [probe],
                resources={"catalog": SupabaseCatalogResource()},
                run_config={"resources": {"catalog": {"config": config}}},
                instance=instance,
            )
    assert connections(listener) == 0
    assert not (tmp_path / "backups").exists() and not (tmp_path / "UNPICKLED").exists()
