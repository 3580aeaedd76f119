"""The state file: the account's objects and stored idempotency results as one JSON document,
written atomically (temp file + rename) so a crash mid-save leaves the previous state intact."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from .idempotency import IdempotencyStore, IdemRecord
from .state import Store

FORMAT_VERSION = 1


def snapshot(store: Store, idem: IdempotencyStore) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "products": list(store.products.values()),
        "prices": list(store.prices.values()),
        "seq": store.seq,
        "next_seq": store.next_seq,
        "deleted_products": sorted(store.deleted_products),
        "idempotency": [
            {
                "scope": scope,
                "key": key,
                "fingerprint": r.fingerprint,
                "status": r.status,
                "body": r.body.decode(),
                "created": r.created,
            }
            for (scope, key), r in idem.records.items()
        ],
    }


def restore(store: Store, idem: IdempotencyStore, data: dict[str, Any]) -> None:
    store.rebuild(
        products=data.get("products", []),
        prices=data.get("prices", []),
        seq={k: int(v) for k, v in data.get("seq", {}).items()},
        next_seq=int(data.get("next_seq", 1)),
        deleted_products=data.get("deleted_products", []),
    )
    idem.clear()
    for r in data.get("idempotency", []):
        idem.records[(r["scope"], r["key"])] = IdemRecord(
            r["fingerprint"], int(r["status"]), r["body"].encode(), float(r["created"])
        )


def is_dirty(store: Store, idem: IdempotencyStore) -> bool:
    return store.dirty or idem.dirty


def save(path: str, store: Store, idem: IdempotencyStore) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".emulator-state-", dir=directory)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(snapshot(store, idem), fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    store.dirty = False
    idem.dirty = False


def load(path: str, store: Store, idem: IdempotencyStore) -> bool:
    """Restore from `path`; False (and nothing changed) when there is no state file yet."""
    if not os.path.exists(path):
        return False
    with open(path) as fh:
        restore(store, idem, json.load(fh))
    return True
