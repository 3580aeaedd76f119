"""The `cms-stripe` command: the workflow of the tool it replaces (validate, dry-run, migrate,
resume, rollback) on top of the same Dagster jobs the UI runs."""

from __future__ import annotations

import sys

import click
import sqlalchemy as sa

from cms_stripe import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cms-stripe")
def cli() -> None:
    """Sync a Supabase/Postgres product catalog into Stripe (dry-run unless told otherwise)."""


@cli.command("demo-data")
@click.option(
    "--url", "url", required=True, help="SQLAlchemy URL of the CMS database (sqlite:///… or postgresql+psycopg://…)."
)
@click.option("--products", "n", default=1000, show_default=True, type=click.IntRange(1), help="How many products.")
@click.option(
    "--seed", default=7, show_default=True, type=int, help="Random seed; the same seed gives the same catalog."
)
@click.option("--table", default="products", show_default=True, help="Table to create and fill.")
@click.option("--replace/--no-replace", default=False, help="Drop the table first.")
def demo_data(url: str, n: int, seed: int, table: str, replace: bool) -> None:
    """Create the CMS schema and fill it with a deterministic demo catalog (about 3 % invalid rows)."""
    from cms_stripe.cms.demo import generate_catalog, write_catalog
    from cms_stripe.cms.schema import drop_schema

    engine = sa.create_engine(url)
    try:
        if replace:
            drop_schema(engine, table)
        catalog = generate_catalog(n, seed)
        written = write_catalog(engine, catalog.products, table)
    finally:
        engine.dispose()
    click.echo(f"wrote {written} products ({len(catalog.invalid)} deliberately invalid) to table {table!r}")


@cli.command("demo")
@click.option("--products", "n", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--dir", "workdir", default=".demo", show_default=True, help="Where the demo keeps its SQLite files.")
def demo(n: int, workdir: str) -> None:
    """Build the demo catalog in SQLite and run the full migration against the local emulator."""
    import pathlib

    from cms_stripe.cms.demo import generate_catalog, write_catalog
    from cms_stripe.cms.schema import drop_schema

    root = pathlib.Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{root / 'cms.sqlite'}")
    try:
        drop_schema(engine)
        catalog = generate_catalog(n)
        write_catalog(engine, catalog.products)
    finally:
        engine.dispose()
    click.echo(f"demo catalog: {n} products ({len(catalog.invalid)} deliberately invalid) in {root / 'cms.sqlite'}")


def main() -> None:
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
