"""The simulator's Swagger description: what it declares, and that it matches Asterisk 22.10.1's own files.

Two kinds of tests:
- self-contained ones (always run): the documents load, reference only what they define, declare exactly
  the operations the simulator implements, and aioari/aioswagger11 can build a client from them;
- comparisons with the real files Asterisk 22.10.1 serves (kept in tests/data, tests/asterisk_reference.py):
  every declared operation, parameter and model must be a faithful subset of the real API.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from telephony.sim import apidocs
from tests.asterisk_reference import ARI_API_DOCS

REAL_DOCS_DIR = ARI_API_DOCS

Doc = dict[str, Any]
OperationKey = tuple[str, str, str]

# fmt: off
# What the simulator implements: (httpMethod, path, nickname) -> parameter names, in the real files' order.
EXPECTED_OPERATIONS: dict[OperationKey, tuple[str, ...]] = {
    ("GET", "/asterisk/info", "getInfo"): ("only",),
    ("GET", "/asterisk/ping", "ping"): (),
    ("GET", "/channels", "list"): (),
    ("POST", "/channels", "originate"): (
        "endpoint", "extension", "context", "priority", "label", "app", "appArgs", "callerId", "timeout",
        "variables", "channelId", "otherChannelId", "originator", "formats",
    ),
    ("GET", "/channels/{channelId}", "get"): ("channelId",),
    ("POST", "/channels/{channelId}", "originateWithId"): (
        "channelId", "endpoint", "extension", "context", "priority", "label", "app", "appArgs", "callerId",
        "timeout", "variables", "otherChannelId", "originator", "formats",
    ),
    ("DELETE", "/channels/{channelId}", "hangup"): ("channelId", "reason_code", "reason"),
    ("POST", "/channels/{channelId}/continue", "continueInDialplan"): (
        "channelId", "context", "extension", "priority", "label",
    ),
    ("POST", "/channels/{channelId}/answer", "answer"): ("channelId",),
    ("POST", "/channels/{channelId}/ring", "ring"): ("channelId",),
    ("DELETE", "/channels/{channelId}/ring", "ringStop"): ("channelId",),
    ("POST", "/channels/{channelId}/dtmf", "sendDTMF"): (
        "channelId", "dtmf", "before", "between", "duration", "after",
    ),
    ("POST", "/channels/{channelId}/play", "play"): (
        "channelId", "media", "lang", "offsetms", "skipms", "playbackId",
    ),
    ("POST", "/channels/{channelId}/play/{playbackId}", "playWithId"): (
        "channelId", "playbackId", "media", "lang", "offsetms", "skipms",
    ),
    ("POST", "/channels/{channelId}/record", "record"): (
        "channelId", "name", "format", "maxDurationSeconds", "maxSilenceSeconds", "ifExists", "beep",
        "terminateOn",
    ),
    ("GET", "/channels/{channelId}/variable", "getChannelVar"): ("channelId", "variable"),
    ("POST", "/channels/{channelId}/variable", "setChannelVar"): ("channelId", "variable", "value"),
    ("POST", "/channels/{channelId}/snoop", "snoopChannel"): (
        "channelId", "spy", "whisper", "app", "appArgs", "snoopId",
    ),
    ("POST", "/channels/{channelId}/snoop/{snoopId}", "snoopChannelWithId"): (
        "channelId", "snoopId", "spy", "whisper", "app", "appArgs",
    ),
    ("POST", "/channels/externalMedia", "externalMedia"): (
        "channelId", "app", "variables", "external_host", "encapsulation", "transport", "connection_type",
        "format", "direction", "data",
    ),
    ("GET", "/bridges", "list"): (),
    ("POST", "/bridges", "create"): ("type", "bridgeId", "name"),
    ("POST", "/bridges/{bridgeId}", "createWithId"): ("type", "bridgeId", "name"),
    ("GET", "/bridges/{bridgeId}", "get"): ("bridgeId",),
    ("DELETE", "/bridges/{bridgeId}", "destroy"): ("bridgeId",),
    ("POST", "/bridges/{bridgeId}/addChannel", "addChannel"): (
        "bridgeId", "channel", "role", "absorbDTMF", "mute", "inhibitConnectedLineUpdates",
    ),
    ("POST", "/bridges/{bridgeId}/removeChannel", "removeChannel"): ("bridgeId", "channel"),
    ("POST", "/bridges/{bridgeId}/play", "play"): (
        "bridgeId", "media", "announcer_format", "lang", "offsetms", "skipms", "playbackId",
    ),
    ("POST", "/bridges/{bridgeId}/play/{playbackId}", "playWithId"): (
        "bridgeId", "playbackId", "media", "announcer_format", "lang", "offsetms", "skipms",
    ),
    ("POST", "/bridges/{bridgeId}/record", "record"): (
        "bridgeId", "name", "format", "recorder_format", "maxDurationSeconds", "maxSilenceSeconds",
        "ifExists", "beep", "terminateOn",
    ),
    ("GET", "/recordings/stored", "listStored"): (),
    ("GET", "/recordings/live/{recordingName}", "getLive"): ("recordingName",),
    ("DELETE", "/recordings/live/{recordingName}", "cancel"): ("recordingName",),
    ("POST", "/recordings/live/{recordingName}/stop", "stop"): ("recordingName",),
    ("GET", "/playbacks/{playbackId}", "get"): ("playbackId",),
    ("DELETE", "/playbacks/{playbackId}", "stop"): ("playbackId",),
    ("GET", "/events", "eventWebsocket"): ("app", "subscribeAll"),
    ("GET", "/applications", "list"): (),
    ("GET", "/applications/{applicationName}", "get"): ("applicationName",),
}

# Every event type the simulator emits on the events websocket.
EMITTED_EVENTS = (
    "StasisStart", "StasisEnd", "Dial", "ChannelStateChange", "ChannelHangupRequest", "ChannelDestroyed",
    "ChannelVarset", "ChannelCallerId", "ChannelConnectedLine", "ChannelDialplan", "ChannelDtmfReceived",
    "ChannelEnteredBridge", "ChannelLeftBridge", "BridgeCreated", "BridgeDestroyed", "ApplicationReplaced",
    "PlaybackStarted", "PlaybackFinished", "RecordingStarted", "RecordingFinished", "ChannelCreated",
)

SWAGGER_PRIMITIVES = {
    "void", "string", "boolean", "number", "int", "long", "double", "float", "Date", "object",
}
# fmt: on

# Parameter fields that decide how a client calls the operation: they must be exactly the real ones.
PARAM_FIELDS = ("paramType", "dataType", "required", "allowMultiple", "defaultValue", "allowableValues")
OPERATION_FIELDS = ("responseClass", "upgrade", "websocketProtocol")
_MISSING = object()


# --- comparison helpers (pure; each returns a list of human-readable problems) -----------------------------


def _operations(declaration: Doc) -> dict[tuple[str, str], tuple[Doc, Doc]]:
    """(httpMethod, path) -> (api, operation)."""
    return {
        (operation["httpMethod"], api["path"]): (api, operation)
        for api in declaration["apis"]
        for operation in api["operations"]
    }


def compare_model(ours: Doc, real: Doc | None) -> list[str]:
    """Problems if ``ours`` is not the real model or a property-subset of it with identical property types."""
    name = ours.get("id", "?")
    if real is None:
        return [f"model {name}: not in the real declaration"]
    problems: list[str] = []
    for key in set(ours) | set(real):
        if key in ("properties", "subTypes"):
            continue
        if ours.get(key, _MISSING) != real.get(key, _MISSING):
            problems.append(f"model {name}: field {key!r} differs")
    for prop_name, prop in ours.get("properties", {}).items():
        real_prop = real.get("properties", {}).get(prop_name)
        if real_prop is None:
            problems.append(f"model {name}: property {prop_name!r} not in the real model")
        elif prop != real_prop:
            problems.append(f"model {name}: property {prop_name!r} differs: {prop!r} != {real_prop!r}")
    extra_subtypes = set(ours.get("subTypes", [])) - set(real.get("subTypes", []))
    if extra_subtypes:
        problems.append(f"model {name}: subTypes not in the real model: {sorted(extra_subtypes)}")
    return problems


def compare_declaration(ours: Doc, real: Doc) -> list[str]:
    """Problems if the API declaration ``ours`` is not a faithful subset of ``real``."""
    problems: list[str] = []
    for key in ("apiVersion", "swaggerVersion", "basePath", "resourcePath", "produces", "since"):
        if ours.get(key, _MISSING) != real.get(key, _MISSING):
            problems.append(f"field {key!r} differs")
    real_apis = {api["path"]: api for api in real["apis"]}
    real_operations = _operations(real)
    for api in ours["apis"]:
        if api["path"] not in real_apis:
            problems.append(f"path {api['path']} not in the real declaration")
            continue
        if api.get("description") != real_apis[api["path"]].get("description"):
            problems.append(f"path {api['path']}: description differs")
        for operation in api["operations"]:
            where = f"{operation.get('httpMethod')} {api['path']}"
            found = real_operations.get((operation.get("httpMethod", ""), api["path"]))
            if found is None:
                problems.append(f"{where}: no such operation in the real declaration")
                continue
            real_operation = found[1]
            if operation.get("nickname") != real_operation["nickname"]:
                problems.append(
                    f"{where}: nickname {operation.get('nickname')!r} != {real_operation['nickname']!r}"
                )
            for key in OPERATION_FIELDS:
                if operation.get(key, _MISSING) != real_operation.get(key, _MISSING):
                    problems.append(f"{where}: field {key!r} differs")
            real_params = {p["name"]: p for p in real_operation.get("parameters", [])}
            for param in operation.get("parameters", []):
                real_param = real_params.get(param["name"])
                if real_param is None:
                    problems.append(f"{where}: parameter {param['name']!r} not in the real operation")
                    continue
                for key in PARAM_FIELDS:
                    if param.get(key, _MISSING) != real_param.get(key, _MISSING):
                        problems.append(f"{where}: parameter {param['name']!r} field {key!r} differs")
            real_errors = real_operation.get("errorResponses", [])
            for error in operation.get("errorResponses", []):
                if error not in real_errors:
                    problems.append(f"{where}: errorResponse {error!r} not in the real operation")
    real_models = real.get("models", {})
    for name, model in ours.get("models", {}).items():
        if model.get("id") != name:
            problems.append(f"model {name}: id {model.get('id')!r} does not match its key")
        problems.extend(compare_model(model, real_models.get(name)))
    return problems


def compare_listing(ours: Doc, real: Doc) -> list[str]:
    """Problems if the listing ``ours`` is not a subset of ``real``, or does not list RESOURCE_NAMES."""
    problems: list[str] = []
    for key in ("apiVersion", "swaggerVersion", "basePath"):
        if ours.get(key, _MISSING) != real.get(key, _MISSING):
            problems.append(f"listing field {key!r} differs")
    real_apis = {api["path"]: api for api in real["apis"]}
    for api in ours["apis"]:
        if api["path"] not in real_apis:
            problems.append(f"listing path {api['path']} not in the real listing")
        elif api != real_apis[api["path"]]:
            problems.append(f"listing entry {api['path']} differs from the real one")
    listed = [_resource_name(api["path"]) for api in ours["apis"]]
    if listed != list(apidocs.RESOURCE_NAMES):
        problems.append(f"listing names {listed} != RESOURCE_NAMES {list(apidocs.RESOURCE_NAMES)}")
    return problems


def _resource_name(listing_path: str) -> str:
    match = re.fullmatch(r"/api-docs/(\w+)\.\{format\}", listing_path)
    assert match, listing_path
    return match.group(1)


def _declarations() -> dict[str, Doc]:
    declarations: dict[str, Doc] = {}
    for name in apidocs.RESOURCE_NAMES:
        declaration = apidocs.load_api_declaration(name)
        assert declaration is not None, name
        declarations[name] = declaration
    return declarations


def _load_real(filename: str) -> Doc:
    with (REAL_DOCS_DIR / filename).open(encoding="utf-8") as fp:
        doc: Doc = json.load(fp)
    return doc


@pytest.fixture
def real_dir() -> Path:
    return REAL_DOCS_DIR


# --- self-contained checks ---------------------------------------------------------------------------------


def test_documents_load_and_every_listed_path_has_a_file() -> None:
    listing = apidocs.load_resource_listing()
    assert listing["swaggerVersion"] == "1.1"
    assert listing["basePath"] == "http://localhost:8088/ari"
    for api in listing["apis"]:
        name = _resource_name(api["path"])
        assert (apidocs.API_DOCS_DIR / f"{name}.json").is_file(), api["path"]
        declaration = apidocs.load_api_declaration(name)
        assert declaration is not None
        assert declaration["resourcePath"] == api["path"]
        assert declaration["basePath"] == "http://localhost:8088/ari"
    assert [_resource_name(api["path"]) for api in listing["apis"]] == list(apidocs.RESOURCE_NAMES)
    assert sorted(p.stem for p in apidocs.API_DOCS_DIR.glob("*.json")) == sorted(
        [*apidocs.RESOURCE_NAMES, "resources"]
    )


def test_unknown_or_unsafe_names_are_not_loaded() -> None:
    for name in ("sounds", "resources", "channels.json", "../channels", "", "Channels"):
        assert apidocs.load_api_declaration(name) is None, name


def test_loaded_documents_are_independent_copies() -> None:
    channels = apidocs.load_api_declaration("channels")
    assert channels is not None
    channels["apis"].clear()
    again = apidocs.load_api_declaration("channels")
    assert again is not None and again["apis"]
    listing = apidocs.load_resource_listing()
    listing["apis"].clear()
    assert apidocs.load_resource_listing()["apis"]


def test_with_base_path_rewrites_a_copy() -> None:
    listing = apidocs.load_resource_listing()
    rewritten = apidocs.with_base_path(listing, "http://127.0.0.1:8088/ari")
    assert rewritten["basePath"] == "http://127.0.0.1:8088/ari"
    assert listing["basePath"] == "http://localhost:8088/ari"
    assert rewritten["apis"] == listing["apis"] and rewritten["apis"] is not listing["apis"]


def test_declares_exactly_the_implemented_operations_and_parameters() -> None:
    operations = apidocs.implemented_operations()
    assert len(operations) == len(set(operations)), "an operation is declared twice"
    assert sorted(operations) == sorted(EXPECTED_OPERATIONS)
    for declaration in _declarations().values():
        nicknames = [op["nickname"] for api in declaration["apis"] for op in api["operations"]]
        # aioswagger11 keys a resource's operations by nickname: a duplicate would silently shadow one.
        assert len(nicknames) == len(set(nicknames)), declaration["resourcePath"]
        for api in declaration["apis"]:
            assert api["operations"], api["path"]
            path_vars = set(re.findall(r"\{(\w+)\}", api["path"]))
            for operation in api["operations"]:
                key = (operation["httpMethod"], api["path"], operation["nickname"])
                params = operation.get("parameters", [])
                assert tuple(p["name"] for p in params) == EXPECTED_OPERATIONS[key], key
                path_params = {p["name"] for p in params if p["paramType"] == "path"}
                assert path_params == path_vars, key


def test_every_referenced_type_is_defined() -> None:
    declarations = _declarations()
    defined = {name for doc in declarations.values() for name in doc["models"]}

    def check(type_name: str, where: str) -> None:
        inner = re.fullmatch(r"List\[(.+)\]", type_name)
        base = inner.group(1) if inner else type_name
        assert base in SWAGGER_PRIMITIVES or base in defined, f"{where}: undefined type {type_name!r}"

    for doc in declarations.values():
        for api in doc["apis"]:
            for operation in api["operations"]:
                check(operation["responseClass"], f"{api['path']} {operation['nickname']}")
        for name, model in doc["models"].items():
            assert model["id"] == name
            for prop_name, prop in model["properties"].items():
                check(prop["type"], f"{name}.{prop_name}")
            for subtype in model.get("subTypes", []):
                assert subtype in doc["models"], f"{name}: subType {subtype} not declared here"


def test_events_declare_every_emitted_event_as_a_subtype_of_event() -> None:
    events = apidocs.load_api_declaration("events")
    assert events is not None
    models = events["models"]
    assert models["Message"]["subTypes"] == ["Event"]
    assert models["Message"]["discriminator"] == "type"
    assert sorted(models["Event"]["subTypes"]) == sorted(EMITTED_EVENTS)
    assert set(models) == {"Message", "Event", *EMITTED_EVENTS}
    operation = events["apis"][0]["operations"][0]
    assert operation["upgrade"] == "websocket" and operation["websocketProtocol"] == "ari"


class _FakeResponse:
    def __init__(self, text: str) -> None:
        self.status = 200
        self._text = text

    async def text(self) -> str:
        return self._text


class _FakeHttpClient:
    """Serves the docs the way the simulator does, with basePath rewritten to the requested host."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.requested: list[str] = []

    async def request(self, method: str, url: str, **_: Any) -> _FakeResponse:
        assert method == "GET"
        self.requested.append(url)
        prefix = f"{self.base}/api-docs/"
        assert url.startswith(prefix), url
        filename = url.removeprefix(prefix)
        if filename == "resources.json":
            doc: Doc | None = apidocs.load_resource_listing()
        else:
            doc = apidocs.load_api_declaration(filename.removesuffix(".json"))
        assert doc is not None, url
        return _FakeResponse(json.dumps(apidocs.with_base_path(doc, self.base)))

    async def close(self) -> None:
        return None


def test_aioswagger11_validates_and_builds_a_client_from_the_dicts() -> None:
    from aioswagger11.client import ClientProcessor, Resource
    from aioswagger11.processors import WebsocketProcessor
    from aioswagger11.swagger_model import Loader

    base = "http://127.0.0.1:8088/ari"
    listing = apidocs.with_base_path(apidocs.load_resource_listing(), base)
    for api in listing["apis"]:
        declaration = apidocs.load_api_declaration(_resource_name(api["path"]))
        assert declaration is not None
        api["api_declaration"] = apidocs.with_base_path(declaration, base)
    # ValidationProcessor always runs first; it raises SwaggerError on a malformed document.
    Loader(None, [WebsocketProcessor(), ClientProcessor()]).process_resource_listing(listing)
    resources = {api["name"]: Resource(api, None) for api in listing["apis"]}
    assert set(resources) == set(apidocs.RESOURCE_NAMES)
    assert resources["channels"].get_operation("originate").uri == f"{base}/channels"
    assert resources["events"].get_operation("eventWebsocket").json["is_websocket"] is True
    built = {
        (op.json["httpMethod"], op.uri.removeprefix(base), op.json["nickname"])
        for resource in resources.values()
        for op in resource.operations.values()
    }
    assert built == set(EXPECTED_OPERATIONS)


def test_aioari_client_initialises_against_the_served_docs() -> None:
    from aioari.client import Client

    base = "http://127.0.0.1:8088/ari"

    async def build() -> tuple[Any, _FakeHttpClient]:
        http = _FakeHttpClient(base)
        client = Client("http://127.0.0.1:8088/", http)
        await client.init()
        return client, http

    client, http = asyncio.run(build())
    assert http.requested[0] == f"{base}/api-docs/resources.json"
    assert sorted(http.requested[1:]) == sorted(f"{base}/api-docs/{n}.json" for n in apidocs.RESOURCE_NAMES)
    assert set(client.repositories) == set(apidocs.RESOURCE_NAMES)
    assert client.swagger.channels.get_operation("externalMedia").uri == f"{base}/channels/externalMedia"
    assert set(EMITTED_EVENTS) <= set(client.event_models)
    # The event-to-object mapping that aioari's on_*_event helpers rely on.
    client.on_channel_event("StasisStart", lambda channel, event: None)
    client.on_bridge_event("ChannelEnteredBridge", lambda bridge, event: None)
    client.on_playback_event("PlaybackFinished", lambda playback, event: None)
    client.on_live_recording_event("RecordingFinished", lambda recording, event: None)


# --- comparisons with the real Asterisk 22.10.1 files ------------------------------------------------------


def test_resource_listing_is_a_subset_of_the_real_one(real_dir: Path) -> None:
    real = _load_real("resources.json")
    assert compare_listing(apidocs.load_resource_listing(), real) == []


@pytest.mark.parametrize("name", apidocs.RESOURCE_NAMES)
def test_declaration_is_a_faithful_subset_of_the_real_one(real_dir: Path, name: str) -> None:
    ours = apidocs.load_api_declaration(name)
    assert ours is not None
    real = _load_real(f"{name}.json")
    assert compare_declaration(ours, real) == []


def test_comparison_reports_deviations(real_dir: Path) -> None:
    real_channels = _load_real("channels.json")
    ours = apidocs.load_api_declaration("channels")
    assert ours is not None
    assert compare_declaration(ours, real_channels) == []

    broken = copy.deepcopy(ours)
    originate = _operations(broken)[("POST", "/channels")][1]
    originate["nickname"] = "originateCall"
    timeout = next(p for p in originate["parameters"] if p["name"] == "timeout")
    timeout["defaultValue"] = 60
    timeout["dataType"] = "string"
    originate["parameters"].append(dict(timeout, name="ringTimeout"))
    hangup = _operations(broken)[("DELETE", "/channels/{channelId}")][1]
    next(p for p in hangup["parameters"] if p["name"] == "reason")["allowableValues"]["values"].append("bye")
    broken["models"]["Channel"]["properties"]["state"]["type"] = "int"
    broken["models"]["Channel"]["properties"]["ringing_since"] = {"type": "Date"}
    broken["apis"].append({"path": "/channels/{channelId}/teleport", "operations": []})

    problems = "\n".join(compare_declaration(broken, real_channels))
    for expected in (
        "nickname 'originateCall' != 'originate'",
        "parameter 'timeout' field 'defaultValue' differs",
        "parameter 'timeout' field 'dataType' differs",
        "parameter 'ringTimeout' not in the real operation",
        "parameter 'reason' field 'allowableValues' differs",
        "model Channel: property 'state' differs",
        "model Channel: property 'ringing_since' not in the real model",
        "path /channels/{channelId}/teleport not in the real declaration",
    ):
        assert expected in problems, expected

    real_events = _load_real("events.json")
    events = apidocs.load_api_declaration("events")
    assert events is not None
    events["models"]["Event"]["subTypes"].append("ChannelTeleported")
    assert compare_declaration(events, real_events) == [
        "model Event: subTypes not in the real model: ['ChannelTeleported']"
    ]

    listing = apidocs.load_resource_listing()
    listing["apis"].append({"path": "/api-docs/teleports.{format}", "description": "Teleports"})
    assert "listing path /api-docs/teleports.{format} not in the real listing" in compare_listing(
        listing, _load_real("resources.json")
    )
