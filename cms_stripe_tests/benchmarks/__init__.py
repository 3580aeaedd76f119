"""Throughput and scale benchmark of the sync (issue 7): `python -m cms_stripe_tests.benchmarks [--quick]`.

The orchestrator (`runner`) starts its own Stripe emulator processes and a fresh PostgreSQL database,
runs every scenario in a child process (`scenarios`) so each one's peak RSS is its own, and prints a
readable table to stderr and one JSON object as the last line of stdout.
"""
