"""Small helpers shared by the CMS backends (retry policy, chunking)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import tenacity

T = TypeVar("T")

log = logging.getLogger("cms_stripe.cms")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    if size < 1:
        raise ValueError(f"chunk size must be positive, got {size}")
    for i in range(0, len(items), size):
        yield items[i : i + size]


def dedupe(ids: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in ids:
        if not isinstance(i, str):
            raise TypeError(f"CMS ids are strings, got {type(i).__name__}: {i!r}")
        seen.setdefault(i, None)
    return list(seen)


def retrying(
    is_transient: Callable[[BaseException], bool], *, attempts: int, wait: float, max_wait: float
) -> tenacity.Retrying:
    """Bounded exponential backoff with jitter, only for errors a retry can cure."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=tenacity.wait_exponential_jitter(multiplier=wait, max=max_wait, jitter=wait),
        before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
