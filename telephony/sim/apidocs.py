"""The simulator's own Swagger 1.1 description of the ARI subset it implements.

Asterisk serves its API description at ``GET /ari/api-docs/resources.json`` (the resource listing) and
``GET /ari/api-docs/{resource}.json`` (one API declaration per resource), rewriting ``basePath`` to the
host the request came in on. Clients such as aioari/aioswagger11 build their whole client from these
documents: the URL of every operation is ``basePath + api.path``, and event objects are mapped through the
``models`` of ``events.json``. So the simulator must describe exactly what it implements: an operation it
declares but does not serve is a 404 at run time, one it serves but does not declare is unreachable.

The JSON files in ``api_docs/`` are the real Asterisk 22.10.1 files filtered down to the implemented
operations, parameters and models (``tests/telephony/sim/test_api_docs.py`` checks them against the
originals). This module only loads them; it imports nothing from the rest of the project.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

API_DOCS_DIR = Path(__file__).resolve().parent / "api_docs"

# In the order of resources.json (the order Asterisk lists them in).
RESOURCE_NAMES: tuple[str, ...] = (
    "asterisk",
    "channels",
    "bridges",
    "recordings",
    "playbacks",
    "events",
    "applications",
)


@cache
def _read(filename: str) -> dict[str, Any]:
    with (API_DOCS_DIR / filename).open(encoding="utf-8") as fp:
        doc = json.load(fp)
    if not isinstance(doc, dict):
        raise ValueError(f"{filename}: expected a JSON object")
    return doc


def load_resource_listing() -> dict[str, Any]:
    """The resource listing (``resources.json``), as a fresh copy the caller may modify."""
    return copy.deepcopy(_read("resources.json"))


def load_api_declaration(name: str) -> dict[str, Any] | None:
    """The API declaration of one resource (``"channels"``, not ``"channels.json"``), or None if unknown.

    Only names in RESOURCE_NAMES are looked up, so a request path can be passed straight in.
    """
    if name not in RESOURCE_NAMES:
        return None
    return copy.deepcopy(_read(f"{name}.json"))


def with_base_path(doc: dict[str, Any], base_path: str) -> dict[str, Any]:
    """A copy of ``doc`` with ``basePath`` replaced, e.g. by ``"http://127.0.0.1:8088/ari"``.

    Asterisk rewrites basePath per request so that clients call back on the address they used.
    """
    result = copy.deepcopy(doc)
    result["basePath"] = base_path
    return result


def implemented_operations() -> list[tuple[str, str, str]]:
    """(httpMethod, path, nickname) of every declared operation, e.g. ("POST", "/channels", "originate")."""
    operations: list[tuple[str, str, str]] = []
    for name in RESOURCE_NAMES:
        declaration = _read(f"{name}.json")
        for api in declaration["apis"]:
            for operation in api["operations"]:
                operations.append((operation["httpMethod"], api["path"], operation["nickname"]))
    return operations
