"""A small foreground process supervisor for running the whole product locally (``manage.py runlocal``).

Semantics, chosen so that a half-running product is never mistaken for a running one:

* every child runs in its own process group, and its stdout/stderr are prefixed with its name;
* Ctrl-C / SIGTERM to the supervisor terminates every child (SIGTERM to the group, then SIGKILL after a
  grace period) and exits 0;
* if any child exits on its own, whatever its status, everything is stopped and the supervisor exits 1.

Django-free on purpose: it is plain process plumbing, tested with plain processes.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Protocol

POLL_INTERVAL_S = 0.2
# The prefix of the supervisor's own messages.
SUPERVISOR_NAME = "runlocal"


class TextSink(Protocol):
    def write(self, text: str, /) -> object: ...
    def flush(self) -> object: ...


@dataclass(frozen=True)
class ProcessSpec:
    """One child: a name for its output prefix, its argv, and environment additions."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    reader: threading.Thread


class Supervisor:
    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        env: Mapping[str, str] | None = None,
        output: TextSink | None = None,
        grace_period: float = 10.0,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique: {names}")
        self.specs = list(specs)
        self.env = dict(os.environ if env is None else env)
        self.output = output if output is not None else sys.stdout
        self.grace_period = grace_period
        self._children: list[_Child] = []
        self._stop_requested = threading.Event()
        self._output_lock = threading.Lock()
        self._width = max(len(name) for name in [*names, SUPERVISOR_NAME])

    # ----------------------------------------------------------------------------------------- output
    def say(self, name: str, line: str) -> None:
        with self._output_lock:
            self.output.write(f"{name.ljust(self._width)} | {line}\n")
            self.output.flush()

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.say(name, raw.decode(errors="replace").rstrip("\r\n"))
        stream.close()

    # -------------------------------------------------------------------------------------- lifecycle
    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self._stop_requested.set()

    def run(self) -> int:
        """Start every child, wait for a stop request or a child's exit, stop everything; the exit code."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        try:
            for spec in self.specs:
                self._start(spec)
        except OSError as exc:
            self.say(SUPERVISOR_NAME, f"could not start a process: {exc}")
            self._stop_all()
            return 1

        failed: _Child | None = None
        while failed is None and not self._stop_requested.is_set():
            failed = next((child for child in self._children if child.process.poll() is not None), None)
            if failed is None:
                self._stop_requested.wait(POLL_INTERVAL_S)

        if failed is not None:
            self.say(
                SUPERVISOR_NAME,
                f"{failed.spec.name} exited with status {failed.process.returncode}; stopping everything",
            )
        else:
            self.say(SUPERVISOR_NAME, "stopping")
        self._stop_all()
        return 1 if failed is not None else 0

    def _start(self, spec: ProcessSpec) -> None:
        env = {**self.env, **spec.env, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            list(spec.argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: the terminal's Ctrl-C reaches only us, and we stop children in order;
            # signalling the group also reaches grandchildren (e.g. Celery's pool processes).
            start_new_session=True,
        )
        assert process.stdout is not None  # noqa: S101 - guaranteed by stdout=PIPE; narrows the type
        reader = threading.Thread(target=self._pump, args=(spec.name, process.stdout), daemon=True)
        reader.start()
        self._children.append(_Child(spec, process, reader))
        self.say(SUPERVISOR_NAME, f"started {spec.name} (pid {process.pid}): {shlex.join(spec.argv)}")

    def _stop_all(self) -> None:
        for child in self._children:
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_period
        for child in self._children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(
                    SUPERVISOR_NAME,
                    f"{child.spec.name} ignored SIGTERM for {self.grace_period:.0f} s; killing",
                )
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            # Whatever is left in the group (a grandchild that outlived its parent) goes too.
            _signal_group(child.process, signal.SIGKILL)
        for child in self._children:
            child.reader.join(timeout=2.0)


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass  # the whole group is already gone
