"""deploy/: the systemd units (checked by systemd-analyze verify, .ci/verify-deploy), the Procfile and the
compose file (no `docker compose config` here: parsed, and every command must name something that exists
in the project), all covering every production process of `make run` with the same arguments."""

from __future__ import annotations

import configparser
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands

from orchestrator.management.commands.runlocal import process_specs
from tests.conftest import PROJECT_ROOT, in_ci

DEPLOY = PROJECT_ROOT / "deploy"
UNITS = DEPLOY / "systemd"
INSTALL_DIR = "/opt/orchestrator"
# make run's processes that are for development only: the PBX simulator, the SMS stand-in and the offline
# stand-in agent.
DEV_ONLY = {"sim", "sms", "agent"}
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "",
}


def production_processes() -> dict[str, list[str]]:
    """make run's processes (name -> argv) that production runs too."""
    specs = process_specs(base_dir=PROJECT_ROOT, environ={"OPENAI_API_KEY": "sk-test"})
    return {spec.name: list(spec.argv) for spec in specs if spec.name not in DEV_ONLY}


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def unit_for(name: str) -> Path:
    plain, template = UNITS / f"orchestrator-{name}.service", UNITS / f"orchestrator-{name}@.service"
    return plain if plain.exists() else template


def check_command(argv: list[str], *, bin_dir: Path | None = None) -> None:
    """``argv`` runs something that exists in this project: a console script of its virtualenv, a module or
    file of the project, a management command, a gunicorn config naming an importable app."""
    assert argv, "empty command"
    program = argv[0]
    if bin_dir is not None:
        assert Path(program).is_absolute(), argv
        assert program.startswith(f"{bin_dir}/") or program.startswith("/bin/"), argv
        program = Path(program).name
    venv_bin = Path(sys.executable).parent
    if program not in ("kill",):
        assert (venv_bin / program).exists(), f"{program}: not installed by the project ({argv})"
    args = argv[1:]
    if program.startswith("python"):
        if args[0] == "-m":
            assert importlib.util.find_spec(args[1]) is not None, argv
        else:
            script = Path(args[0].replace(f"{INSTALL_DIR}/", ""))
            assert (PROJECT_ROOT / script).is_file(), argv
            if script.name == "manage.py":
                assert args[1] in get_commands(), f"no management command {args[1]!r}"
    elif program == "celery":
        assert args[:2] == ["-A", "orchestrator"] and args[2] in ("worker", "beat"), argv
    elif program == "gunicorn":
        config = Path(args[args.index("--config") + 1].replace(f"{INSTALL_DIR}/", ""))
        assert (PROJECT_ROOT / config).is_file(), argv
        app = re.search(r'^wsgi_app = "([\w.]+):(\w+)"', (PROJECT_ROOT / config).read_text(), re.MULTILINE)
        assert app is not None and importlib.util.find_spec(app[1]) is not None, config


def _tail(argv: list[str], after: str) -> list[str]:
    return argv[argv.index(after) + 1 :]


def same_arguments(name: str, production: list[str], local: list[str]) -> None:
    """Production runs a process with make run's arguments (beat may add where its schedule lives)."""
    if name in ("worker", "beat"):
        expected = _tail(local, "orchestrator")
        assert _tail(production, "orchestrator")[: len(expected)] == expected, (production, local)
    elif name == "stasis":
        assert _tail(production, "manage.py" if "manage.py" in production else f"{INSTALL_DIR}/manage.py")[
            :2
        ] == ["run_stasis", "--pbx"]
    elif name == "media":
        assert production[-2:] == ["-m", "media"], production


# ------------------------------------------------------------------------------------------ systemd units
def test_every_production_process_has_a_hardened_unit():
    processes = production_processes()
    assert set(processes) == {"web", "worker", "beat", "stasis", "media"}
    target = _unit(UNITS / "orchestrator.target")
    for name, local in processes.items():
        path = unit_for(name)
        assert path.exists(), f"no unit for {name}"
        unit = _unit(path)
        service = unit["Service"]
        assert service["User"] == "orchestrator" and service["Group"] == "orchestrator", path.name
        assert service["EnvironmentFile"] == "/etc/orchestrator/orchestrator.env", path.name
        assert service["WorkingDirectory"] == INSTALL_DIR, path.name
        assert service["Restart"] in ("on-failure", "always"), path.name
        for key, value in HARDENING.items():
            assert service.get(key) == value, (path.name, key)
        assert unit["Install"]["WantedBy"] == "orchestrator.target", path.name
        assert unit["Unit"]["PartOf"] == "orchestrator.target", path.name
        for key in ("ExecStartPre", "ExecStart"):
            if key in service:
                argv = shlex.split(service[key].replace("%i", "ast-1"))
                check_command(argv, bin_dir=Path(f"{INSTALL_DIR}/.venv/bin"))
        if name != "stasis":  # a template: its instances (one per PBX) are enabled by name
            assert path.name in target["Unit"]["Wants"].split(), path.name
        same_arguments(name, shlex.split(service["ExecStart"].replace("%i", "ast-1")), local)
    example = (UNITS / "orchestrator.env.example").read_text()
    for variable in ("SECRET_KEY", "FIELD_ENCRYPTION_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL"):
        assert re.search(rf"^{variable}=", example, re.MULTILINE), variable
    assert re.search(r"^DEBUG=0$", example, re.MULTILINE)
    assert "u orchestrator " in (UNITS / "orchestrator.sysusers.conf").read_text()


def test_systemd_analyze_verifies_the_units():
    result = subprocess.run(
        [str(PROJECT_ROOT / ".ci" / "verify-deploy")], capture_output=True, text=True, timeout=120
    )
    if result.returncode == 3 and not in_ci():
        pytest.skip(result.stderr.strip())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "units valid" in result.stdout


# --------------------------------------------------------------------------------------------- Procfile
def test_the_procfile_runs_every_production_process():
    entries = dict(
        line.split(":", 1)
        for line in (PROJECT_ROOT / "Procfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    processes = production_processes()
    assert set(entries) == set(processes)
    for name, command in entries.items():
        argv = shlex.split(re.sub(r"\$\{(\w+):-([^}]*)\}", r"\2", command))
        check_command(argv)
        same_arguments(name, argv, processes[name])


# ------------------------------------------------------------------------------------------ compose file
def test_the_compose_file_runs_every_production_process_from_the_project():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    processes = production_processes()
    assert {"postgres", "redis"} <= set(services)
    assert set(processes) <= set(services)
    for name, service in services.items():
        if name in ("postgres", "redis"):
            assert "image" in service and "healthcheck" in service, name
            continue
        build = service["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == PROJECT_ROOT.resolve(), name
        assert (context / build["dockerfile"]).is_file(), name
        assert service["env_file"] == "orchestrator.env", name
        assert service["environment"]["DATABASE_URL"].startswith("postgres://"), name
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:"), name
        check_command(service["command"])
        if name in processes:
            same_arguments(name, service["command"], processes[name])
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"][-2:] == ["migrate", "--noinput"]
    # Everything the image copies in exists.
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", dockerfile, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (PROJECT_ROOT / source).exists(), source
    assert re.search(r'^CMD \["gunicorn", "--config", "deploy/gunicorn.conf.py"\]$', dockerfile, re.MULTILINE)
    # ... and keeps every package the project installs (and what the processes read at run time).
    ignored = {line.strip().rstrip("/") for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()}
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    include = re.search(r"^include = \[(.*)\]$", pyproject, re.MULTILINE)
    assert include is not None
    packages = [name.strip(' "*') for name in include[1].split(",")]
    assert "orchestrator" in packages
    for kept in [*packages, "manage.py", "pyproject.toml", "deploy"]:
        assert kept not in ignored, kept


def test_the_dialplan_hands_every_did_to_the_stasis_app_unanswered():
    """Inbound flows route by the number dialed: the [inbound] context passes ${EXTEN} to the app, which
    answers once it has decided (a transfer to the office line is answered only when someone picks up)."""
    text = (DEPLOY / "asterisk" / "extensions.conf").read_text()
    context = text.split("[inbound]", 1)[1]
    lines = [line.split(";", 1)[0].strip() for line in context.splitlines()]
    lines = [line for line in lines if line]
    stasis = next(i for i, line in enumerate(lines) if "Stasis(${ORCHESTRATOR_APP},inbound,${EXTEN})" in line)
    assert lines[0].startswith("exten => _[+0-9].,1,")
    assert not any("Answer()" in line for line in lines[:stasis])
    failed = next(i for i, line in enumerate(lines) if "(failed)" in line)
    assert any("Answer()" in line for line in lines[failed:]) and "Playback(ss-noservice)" in context
    assert "ORCHESTRATOR_APP = ai_agent" in text


def test_the_dialplan_has_the_answering_machine_detection_context():
    """The Stasis app's AMD hop (telephony.stasis.controller): AMD() with the campaign's thresholds, then
    back into the app with the result as its args, as the simulator emulates it (telephony/sim/amd.py)."""
    text = (DEPLOY / "asterisk" / "extensions.conf").read_text()
    context = text.split("[ai-amd]", 1)[1].split("\n[", 1)[0]
    lines = [line.split(";", 1)[0].strip() for line in context.splitlines()]
    assert [line for line in lines if line] == [
        "exten => s,1,AMD(${AI_AMD_ARGS})",
        "same => n,Stasis(${AI_STASIS_APP},amd,${AMDSTATUS},${AMDCAUSE})",
        "same => n,Hangup()",
    ]
