"""cms-stripe: sync a Supabase/Postgres product catalog into Stripe as a Dagster asset pipeline."""

__version__ = "0.1.0"
