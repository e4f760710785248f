"""The dependency rules of DESIGN.md §3, enforced: ``lint-imports`` checks the contracts written in
pyproject.toml against the real import graph, and the one contract that has to name modules one by one is
checked for being complete, so a new module of telephony/ cannot slip past it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import telephony

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict[str, list[str] | str | bool]]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def _names(contract: dict[str, list[str] | str | bool], key: str) -> set[str]:
    value = contract.get(key, [])
    assert isinstance(value, list)
    return set(value)


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout
    assert f"{len(_contracts())} kept" in done.stdout


def test_the_simulator_contracts_name_every_other_module_of_telephony() -> None:
    others = {f"telephony.{m.name}" for m in pkgutil.iter_modules(telephony.__path__) if m.name != "sim"}
    contracts = _contracts()
    outward = [c for c in contracts if _names(c, "source_modules") == {"telephony.sim"}]
    assert any(_names(c, "forbidden_modules") == others for c in outward)
    inward = [c for c in contracts if _names(c, "forbidden_modules") == {"telephony.sim"}]
    assert len(inward) == 1
    assert others <= _names(inward[0], "source_modules")
