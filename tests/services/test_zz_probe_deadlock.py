from __future__ import annotations

import threading
from typing import Any

import pytest

from snapshotd.services.metrics import Metrics
from snapshotd.store.db import Database
from tests.services.test_metrics_charts import BASE, org, point


@pytest.mark.parametrize("what", ["metrics", "series", "measurements"])
@pytest.mark.parametrize("attempt", range(5))
def test_probe(any_db: Database, what: str, attempt: int) -> None:
    metrics = Metrics(any_db)
    acme = org(any_db, "acme")
    n = 200
    if what == "metrics":
        samples = [point(f"m.{i}", 1, BASE) for i in range(n)]
    elif what == "series":
        metrics.submit(acme, [point("s", 1, BASE - 5)], {})
        samples = [point("s", 1, BASE, {"host": f"h{i}"}) for i in range(n)]
    else:
        samples = [point("s", 1, BASE, {"host": f"h{i}"}) for i in range(n)]
        metrics.submit(acme, samples, {})
    barrier = threading.Barrier(2)
    errors: list[Any] = []

    def run(batch: list[Any]) -> None:
        try:
            barrier.wait(10)
            metrics.submit(acme, batch, {})
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(b,)) for b in (samples, samples[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(what, [type(e).__name__ + str(e)[:200] for e in errors])
    assert not errors
