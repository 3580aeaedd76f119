"""The outcome names the assets count and the CLI reads are the engine's own: a new outcome in the
executor without its name in constants.py would be counted nowhere."""

from __future__ import annotations

from typing import get_args

from cms_stripe.constants import (
    OUTCOMES,
    PARTITION_DETAIL_KEYS,
    PER_PARTITION_KEYS,
    PLAN_COUNT_KEYS,
    RUN_LINK_KEYS,
    RUN_WIDE_KEYS,
)
from cms_stripe.core.executor import Outcome
from cms_stripe.core.plan import Plan


def test_outcome_names_are_the_executors() -> None:
    assert sorted(OUTCOMES) == sorted(get_args(Outcome))
    assert sorted(OUTCOMES) == [
        "archived",
        "created",
        "failed",
        "noop",
        "reactivated",
        "repriced",
        "skipped",
        "updated",
    ]


def test_plan_count_keys_are_the_plans_own_counts() -> None:
    # Every partition must carry every plan count (zero on an empty day): the list is the plan's.
    assert sorted(PLAN_COUNT_KEYS) == sorted("plan_" + kind for kind in Plan(operations=[]).counts())


def test_a_metadata_key_is_of_one_kind_only() -> None:
    kinds = (PER_PARTITION_KEYS, PARTITION_DETAIL_KEYS, RUN_LINK_KEYS, RUN_WIDE_KEYS)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            assert not a & b, sorted(a & b)
    # What plots over partitions would flatten if it were stamped on each of them.
    assert {"stripe_calls", "products_per_second", "duration_s", "stripe_writes"} <= RUN_WIDE_KEYS
