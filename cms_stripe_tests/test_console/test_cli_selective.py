"""A selective run (an op job, no asset materialized) gets the same report and log as a range run:
the listed ids, what was created and what was quarantined, with codes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import sqlalchemy as sa

from cms_stripe.cms.demo import generate_catalog, write_catalog
from cms_stripe.core.mapping import validate_product
from cms_stripe.emulator import EmulatorConfig, EmulatorServer
from cms_stripe_tests.test_cli import ANCHOR, run_cli
from cms_stripe_tests.test_console.test_cli_console import fresh_env


def test_selective_migrate_report_and_log(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    catalog = generate_catalog(60, seed=4, anchor=ANCHOR, days=3)
    live = [p for p in catalog.products if p.should_be_active and not validate_product(p)][:3]
    bad = sorted(catalog.invalid)[0]
    ids = [p.id for p in live] + [bad]
    cms_url = f"sqlite:///{tmp_path / 'cms.sqlite'}"
    write_catalog(sa.create_engine(cms_url), catalog.products)
    with EmulatorServer(EmulatorConfig()) as emulator:
        env = fresh_env(
            tmp_path, cms_url, emulator.url, MIGRATION_STRATEGY="selective", MIGRATION_PRODUCT_IDS=",".join(ids)
        )
        result = run_cli(["migrate"], env, cwd=work)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert {p["metadata"]["cms_id"] for p in emulator.objects()["products"]} == {p.id for p in live}
    assert result.stdout.splitlines()[0] == "cms-stripe migrate: selective sync of 4 CMS ids (APPLY)"
    (path,) = (work / "reports").glob("migration-report-*.json")
    report = json.loads(path.read_text())
    assert report["strategy"] == "selective" and report["product_ids"] == ids and report["status"] == "success"
    counts = report["counts"]
    assert (counts["rows_read"], counts["valid"], counts["quarantined"], counts["created"]) == (4, 3, 1, 3)
    assert [e["cms_id"] for e in report["first_errors"]] == [bad]
    assert report["errors_by_code"] and all(c.startswith("VALIDATION_ERROR[") for c in report["errors_by_code"])
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    log = (work / "logs" / f"migration-{day}.log").read_text()
    assert len(re.findall(r" run=[0-9a-f]{8} write ", log)) == 3
    assert len(re.findall(rf" run=[0-9a-f]{{8}} row .*cms_id={bad}:", log)) == 1
