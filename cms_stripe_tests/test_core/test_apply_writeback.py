"""core.apply against the emulator and a real SQLite CMS, without Dagster: operations checked in
chunks, and the compare-and-set write-back — an editor who links a row to another Stripe product
after apply checked it keeps that link (the apply's write-back for the row is a conflict, not a write)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from cms_stripe.cms.demo import write_catalog
from cms_stripe.cms.sql import SqlCatalogSource
from cms_stripe.core.apply import apply_reviewed_plan
from cms_stripe.core.catalog import CmsProduct
from cms_stripe.core.plan import build_plan
from cms_stripe.core.state import read_state
from cms_stripe_tests.test_assets.conftest import products_by_cms_id
from cms_stripe_tests.test_core.conftest import row


class EditorRelinksAfterTheCheck:
    """Reads rows for the apply's check, then (as an editor would) links row `cms_id` by hand."""

    def __init__(self, source: SqlCatalogSource, cms_id: str) -> None:
        self.source = source
        self.cms_id = cms_id
        self.reads: list[list[str]] = []

    def read_ids(self, ids: Sequence[str]) -> list[CmsProduct]:
        self.reads.append(list(ids))
        rows = self.source.read_ids(ids)
        if self.cms_id in ids:
            with self.source.engine.begin() as conn:
                conn.exec_driver_sql(
                    "UPDATE products SET stripe_product_id = 'prod_linked_by_hand' WHERE id = ?", (self.cms_id,)
                )
        return rows


def test_an_editors_link_made_after_the_check_wins_over_the_write_back(tmp_path, emulator, gateway):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'cms.sqlite'}")
    write_catalog(engine, [row("a"), row("b"), row("c")])
    source = SqlCatalogSource(engine)
    rows = source.read_ids(["a", "b", "c"])
    plan = build_plan(rows, read_state(gateway, rows))
    assert [op.kind for op in plan.operations] == ["create", "create", "create"]

    reader = EditorRelinksAfterTheCheck(source, "b")
    report = apply_reviewed_plan(
        plan,
        reader=reader,
        gateway=gateway,
        writer=source,
        run_id="apply-writeback-test",
        log=lambda _: None,
        chunk_size=2,
    )
    assert reader.reads == [["a", "b"], ["c"]]
    assert report.refused == [] and report.ok
    assert report.counts()["created"] == 3
    # The report's count is the emulator's (a live-mode create may take two requests: lane B).
    assert report.stripe_writes == emulator.inspect()["writes_total"] >= 3
    assert report.written_back == 2 and report.writeback_conflicts == ["b"]
    assert sorted(products_by_cms_id(emulator)) == ["a", "b", "c"]
    with engine.connect() as conn:
        links = {r[0]: r[1] for r in conn.exec_driver_sql("SELECT id, stripe_product_id FROM products").all()}
    assert links == {"a": "prod_cms_a", "b": "prod_linked_by_hand", "c": "prod_cms_c"}
    engine.dispose()
