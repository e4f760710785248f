"""ARI error responses and the request-parameter parsing every resource shares."""

from __future__ import annotations


class AriError(Exception):
    """An ARI error response: status and the JSON body Asterisk would send."""

    def __init__(self, status: int, message: str, *, key: str = "message") -> None:
        super().__init__(message)
        self.status = status
        self.body = {key: message}


def allocation_failed() -> AriError:
    return AriError(500, "Allocation failed", key="error")


def ast_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")


def int_param(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise AriError(400, f"{name} must be an integer") from None
