"""The media worker's configuration, from the environment only (it runs without Django or a database).

Variables (defaults in brackets):

* ``MEDIA_LISTEN`` [127.0.0.1:9092]: the AudioSocket listen address; the Stasis app's
  ``MEDIA_WORKER_HOSTS`` name it.
* ``MEDIA_ADVERTISE`` [MEDIA_LISTEN]: the ``host:port`` this worker announces in its health heartbeat
  (``media:workers`` in Redis, read by dispatch); set it when the listen address is not the one the
  Stasis app dials (``0.0.0.0``, a container).
* ``MEDIA_ALLOWED_PEERS`` [empty = any]: comma-separated CIDRs (``10.0.0.0/8,192.0.2.7/32``) that may
  connect; anyone else is closed at once. Defence in depth: an AudioSocket UUID is accepted only once the
  Stasis app announced it anyway.
* ``MEDIA_MAX_CALLS`` [500]: concurrent calls; a connection beyond that is closed at once.
* ``MEDIA_DRAIN_S`` [60]: on SIGTERM, how long live calls may go on before the agent says goodbye.
* ``REDIS_URL`` [redis://127.0.0.1:6379/0]: call briefs, call actions, the transcript feed.
* ``CELERY_BROKER_URL`` [REDIS_URL]: where ``media.*`` tasks go; required when REDIS_URL is ``unix://``.
* ``CELERY_QUEUE`` [celery]: the orchestrator's Celery queue.
* ``OPENAI_API_KEY``: sent as a Bearer token. Without it, ``REALTIME_URL`` must name a
  Realtime-protocol server (the local agent, ``python -m media.localai``).
* ``REALTIME_URL`` [wss://api.openai.com/v1/realtime]: the Realtime GA endpoint (``?model=`` is added).
* ``REALTIME_MODEL`` [gpt-realtime]: the model when the call brief names none.
* ``REALTIME_TRANSCRIBE_MODEL`` [gpt-4o-mini-transcribe]: caller-side transcription; empty turns it off.
* ``MEDIA_UUID_TIMEOUT_S`` [2]: the UUID frame must arrive within this time of the connect.
* ``MEDIA_MAX_CALL_S`` [3600]: the hard maximum of a call when its brief gives none.
* ``MEDIA_METRICS_LISTEN`` [127.0.0.1:9103]: where ``GET /metrics`` (Prometheus) is served; empty or ``off``:
  nowhere. Each media worker of a host needs a port of its own (media/metrics.py).
* ``MEDIA_STATS_FILE``: when set, hot-path latency histograms are kept and written there on exit
  (media/probe.py; the media benchmark uses it).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_METRICS_LISTEN = "127.0.0.1:9103"


class ConfigError(ValueError):
    """The environment does not describe a runnable media worker."""


def _split_hostport(value: str, name: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


def _number(env: dict[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: str, name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated CIDRs, got {part.strip()!r}") from None
    return tuple(networks)


def peer_allowed(host: str, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether a peer address is inside one of ``networks`` (no networks: everyone is)."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 peer of a dual-stack listener
    return any(address in network for network in networks)


@dataclass(frozen=True)
class MediaConfig:
    host: str = "127.0.0.1"
    port: int = 9092
    advertise: str = ""  # empty: the listen address as bound (with the port the system chose for port 0)
    allowed_peers: tuple[IPNetwork, ...] = ()
    max_calls: int = 500
    drain_s: float = 60.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = "redis://127.0.0.1:6379/0"
    celery_queue: str = "celery"
    realtime_url: str = DEFAULT_REALTIME_URL
    realtime_model: str = "gpt-realtime"
    transcribe_model: str = "gpt-4o-mini-transcribe"
    api_key: str = field(default="", repr=False)
    uuid_timeout_s: float = 2.0
    max_call_s: float = 3600.0
    stats_file: str = ""
    metrics_listen: tuple[str, int] | None = None  # from_env: 127.0.0.1:9103 unless MEDIA_METRICS_LISTEN says

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> MediaConfig:
        env = dict(os.environ if environ is None else environ)
        listen = env.get("MEDIA_LISTEN", "").strip() or "127.0.0.1:9092"
        host, port = _split_hostport(listen, "MEDIA_LISTEN")
        advertise = env.get("MEDIA_ADVERTISE", "").strip()
        if advertise:
            _split_hostport(advertise, "MEDIA_ADVERTISE")
        redis_url = env.get("REDIS_URL", "").strip() or "redis://127.0.0.1:6379/0"
        broker_url = env.get("CELERY_BROKER_URL", "").strip()
        if not broker_url:
            if urlsplit(redis_url).scheme == "unix":
                raise ConfigError(
                    "REDIS_URL is a unix socket: set CELERY_BROKER_URL too (kombu spells it redis+socket://)"
                )
            broker_url = redis_url
        api_key = env.get("OPENAI_API_KEY", "").strip()
        realtime_url = env.get("REALTIME_URL", "").strip()
        if not realtime_url:
            if not api_key:
                raise ConfigError(
                    "set OPENAI_API_KEY, or REALTIME_URL to a Realtime-protocol server (the local agent)"
                )
            realtime_url = DEFAULT_REALTIME_URL
        if urlsplit(realtime_url).scheme not in ("ws", "wss"):
            raise ConfigError(f"REALTIME_URL must be a ws:// or wss:// URL, got {realtime_url!r}")
        metrics_raw = env.get("MEDIA_METRICS_LISTEN", DEFAULT_METRICS_LISTEN).strip()
        metrics_listen = (
            None
            if metrics_raw.lower() in ("", "off")
            else _split_hostport(metrics_raw, "MEDIA_METRICS_LISTEN")
        )
        return cls(
            host=host,
            port=port,
            advertise=advertise,
            allowed_peers=_networks(env.get("MEDIA_ALLOWED_PEERS", ""), "MEDIA_ALLOWED_PEERS"),
            max_calls=int(_number(env, "MEDIA_MAX_CALLS", 500, minimum=1)),
            drain_s=_number(env, "MEDIA_DRAIN_S", 60.0),
            redis_url=redis_url,
            broker_url=broker_url,
            celery_queue=env.get("CELERY_QUEUE", "").strip() or "celery",
            realtime_url=realtime_url,
            realtime_model=env.get("REALTIME_MODEL", "").strip() or "gpt-realtime",
            transcribe_model=env.get("REALTIME_TRANSCRIBE_MODEL", "gpt-4o-mini-transcribe").strip(),
            api_key=api_key,
            uuid_timeout_s=_number(env, "MEDIA_UUID_TIMEOUT_S", 2.0, minimum=0.1),
            max_call_s=_number(env, "MEDIA_MAX_CALL_S", 3600.0, minimum=1.0),
            stats_file=env.get("MEDIA_STATS_FILE", "").strip(),
            metrics_listen=metrics_listen,
        )
