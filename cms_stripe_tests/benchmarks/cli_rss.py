"""`python -m cms_stripe_tests.benchmarks.cli_rss ARGS`: `cms-stripe ARGS` in this very process (the same
`cms_stripe.cli.main` the console script calls), writing its peak RSS to $BENCH_RSS_FILE at exit."""

from __future__ import annotations

import atexit
import json
import os
import sys

from cms_stripe_tests.benchmarks.rss import own_peak_rss_mb


def _report() -> None:
    path = os.environ.get("BENCH_RSS_FILE")
    if path:
        with open(path, "w") as f:
            json.dump({"peak_rss_mb": own_peak_rss_mb()}, f)


def main() -> None:
    atexit.register(_report)
    sys.argv = ["cms-stripe", *sys.argv[1:]]
    from cms_stripe.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
