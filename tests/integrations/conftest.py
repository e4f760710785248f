from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integrations.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    the_receiver = Receiver().start()
    try:
        yield the_receiver
    finally:
        the_receiver.stop()


@pytest.fixture
def loopback_allowed(settings: pytest.FixtureRequest) -> None:
    """The operator's policy admits 127.0.0.1 (as the demo does for the simulator): the local receiver."""
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]  # type: ignore[attr-defined]
