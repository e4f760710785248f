"""What a real Asterisk 22.10.1 did and serves, recorded once and kept in the repository (tests/data).

The trace-conformance, outcome, AudioSocket codec and Stasis app tests compare the product and the PBX
simulator with these recordings. They are part of the test suite, not an optional extra: a missing or empty
folder raises at import, so every module that needs them errors at collection instead of skipping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "asterisk-22.10.1"


def _required(directory: Path) -> Path:
    if not any(directory.glob("*.json")):
        raise FileNotFoundError(
            f"the recorded Asterisk 22.10.1 reference files are missing: no *.json in {directory} "
            "(they are committed with the tests; restore them from version control)"
        )
    return directory


# One JSON file per recorded scenario (ARI requests and answers, every event, the AudioSocket frames).
TRACES = _required(REFERENCE_DIR / "traces")
# The unfiltered Swagger files Asterisk 22.10.1 serves at /ari/api-docs/*.json.
ARI_API_DOCS = _required(REFERENCE_DIR / "ari-api-docs")


def trace_paths() -> list[Path]:
    """Every recorded trace, by name."""
    return sorted(TRACES.glob("*.json"))


def load_trace(name: str) -> dict[str, Any]:
    """The recorded trace `name` (a file stem of TRACES); a missing one raises FileNotFoundError."""
    data: dict[str, Any] = json.loads((TRACES / f"{name}.json").read_text())
    return data
