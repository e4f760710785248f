"""The Redis transport survives a broker restart (orchestrator/broker.py): kombu 5.7.0 crashed the worker
when it tried to restore unacknowledged messages after the transport's connection was gone."""

from __future__ import annotations

import logging

import pytest
from kombu import Connection
from kombu.transport import resolve_transport
from kombu.transport.redis import QoS as KombuQoS

from orchestrator import broker
from orchestrator.celery import app


def test_the_celery_app_uses_the_fixed_transport_for_every_redis_url() -> None:
    broker.install()
    for url in ("redis://127.0.0.1:6379/0", "rediss://h:6380/0", "redis+socket:///tmp/r.sock"):
        assert Connection(url).transport_cls in ("redis", "rediss")
        transport: object = resolve_transport(Connection(url).transport_cls)
        assert transport is broker.Transport
    assert isinstance(app.connection_for_write().transport, broker.Transport)


class _Gone:
    """A channel whose transport's connection is already closed, as after a lost broker connection."""

    def __init__(self) -> None:
        self.do_restore = True
        self.connection = type("Transport", (), {"client": None})()

    def conn_or_acquire(self, client: object = None) -> object:
        raise AttributeError("'NoneType' object has no attribute 'hostname'")


def test_restoring_unacked_messages_without_a_connection_does_not_kill_the_worker(caplog) -> None:
    qos = broker.QoS(_Gone())
    assert qos._delivered is not None
    qos._delivered["tag-1"] = object()
    with caplog.at_level(logging.WARNING, logger="orchestrator.broker"):
        qos.restore_unacked_once()  # what closing the channel does; kombu's own QoS raised here
    assert "1 unacknowledged message(s) not restored now" in caplog.text
    assert not qos._delivered
    with pytest.raises(AttributeError):
        KombuQoS(_Gone()).restore_unacked()  # (the defect, for the record)


def test_acknowledging_on_a_channel_whose_connection_is_gone_does_not_kill_the_worker(caplog) -> None:
    """A task that finished after the broker connection was lost: its ack finds the channel closed."""
    qos = broker.QoS(_Gone())
    assert qos._delivered is not None
    qos._delivered["tag-2"] = object()
    with caplog.at_level(logging.WARNING, logger="orchestrator.broker"):
        qos.ack("tag-2")
        qos.reject("tag-3", requeue=True)
    assert "message tag-2 not acknowledged" in caplog.text and "message tag-3 not rejected" in caplog.text
    assert "tag-2" not in qos._delivered
    with pytest.raises(AttributeError):
        KombuQoS(_Gone()).ack("tag-2")  # (the defect, for the record)
