"""How the Stasis app reaches one PBX's ARI and runs calls on it."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver


@dataclass(frozen=True)
class StasisConfig:
    """How to reach one PBX's ARI and how to run calls on it."""

    base_url: str  # http://host:8088 (plus the http.conf prefix), without /ari and without credentials
    user: str
    password: str = field(repr=False)
    app: str = "ai_agent"
    media_hosts: tuple[str, ...] = ("127.0.0.1:9092",)
    media_format: str = "slin24"
    max_call_duration_s: float = 3600.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 5.0  # externalMedia connects inside the request: up to 2 s per address
    heartbeat_s: float = 10.0
    end_grace_s: float = 5.0  # after our own hangup, how long to wait for ChannelDestroyed before reporting
    delivery_concurrency: int = 64  # calls whose events are being handed to the sink at the same time
    redis_url: str | None = field(default=None, repr=False)  # call actions come from here; None: no commands
    command_keys: tuple[str, ...] = ()  # the lists to BLPOP (command_key(pbx id) for each PBX row served)
    command_poll_s: float = 1.0  # the BLPOP timeout: how soon stop() is noticed by the command consumer
    transfer_timeout_s: float = 30.0  # when a transfer command gives none
    # A warm transfer's human has this long, once with the agent, to accept (DTMF 1) or decline (DTMF 2).
    transfer_decision_timeout_s: float = 60.0
    # The PBX rows this app serves: its heartbeat (telephony.health) says they can take calls.
    pbx_ids: tuple[str, ...] = ()
    # How long the AudioSocket leg may take to enter the app after externalMedia answered (module docstring).
    media_start_timeout_s: float = 5.0
    # What an inbound caller hears while inbound calls are not routed yet (an Asterisk sound URI).
    inbound_message: str = "sound:ss-noservice"
    # How long the sink may take to say where an inbound call goes (route_inbound); then it is refused.
    inbound_route_timeout_s: float = 5.0
    # Answering-machine detection (the ai-amd dialplan hop): the context, and when to look at a channel that
    # has not come back from it (the campaign's total analysis time is at most AMD_MAX_ANALYSIS_S; the
    # app hears nothing of a channel in the dialplan, so a callee who hung up there is seen by a GET), then
    # how often to look again, and after how long in the hop the channel is hung up.
    amd_context: str = "ai-amd"
    amd_check_s: float = 10.0
    amd_recheck_s: float = 2.0
    amd_max_s: float = 30.0
    # How host names of the PBX are resolved (None: aiohttp's default). A tenant's own PBX gets one that
    # refuses addresses outside the URL policy (the caller provides it: telephony knows no tenants).
    resolver: AbstractResolver | None = field(default=None, repr=False, compare=False)
