"""The outbound counters the dispatch and originate code records."""

from __future__ import annotations

import pytest

from campaigns import metrics


def test_originates_by_result_limiter_waits_and_dispatch_passes():
    sent = metrics.ORIGINATES.labels(result="sent")
    before = sent._value.get()
    metrics.record_originate("sent")
    assert sent._value.get() == before + 1
    with pytest.raises(ValueError):
        metrics.record_originate("maybe")
    waits = metrics.LIMITER_WAIT._sum.get()
    metrics.observe_limiter_wait(0.25)
    metrics.observe_limiter_wait(-1)  # clock skew: counted as no wait
    assert metrics.LIMITER_WAIT._sum.get() == waits + 0.25
    passes = metrics.DISPATCH_PASSES._value.get()
    claimed = metrics.DISPATCH_CLAIMED._value.get()
    metrics.record_dispatch_pass(claimed=3)
    metrics.record_dispatch_pass()
    assert metrics.DISPATCH_PASSES._value.get() == passes + 2
    assert metrics.DISPATCH_CLAIMED._value.get() == claimed + 3
