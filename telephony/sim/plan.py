"""The call plan: which behaviour a simulated callee (or inbound caller) follows.

A plan is a JSON or YAML document::

    seed: 7                      # makes `mix` choices reproducible
    default: answer              # for numbers that match nothing below
    numbers:                     # exact numbers ("+" optional when matching)
      "+15550100001": busy
      "+15550100002": {behaviour: answer, after: 2, say: [{at: 0.5, text: "Hello?"}], hangup_after: 20}
    prefixes:                    # longest prefix wins
      "+1555020": {behaviour: mix, choices: [{weight: 3, behaviour: answer}, {weight: 1, behaviour: busy}]}
      "+1555030": {behaviour: machine, greeting_s: 4, beep_hz: 1000, beep_s: 0.5}   # an answering machine

The number is taken from the dialed endpoint (`PJSIP/<number>@trunk`, `Local/<number>@ctx`, `SIP/<number>`).
A number that matches nothing and is itself a behaviour name (`Local/busy@callee`, as in the recorded
traces) gets that behaviour with its defaults.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BEHAVIOURS = (
    "answer",
    "busy",
    "congestion",
    "no_answer",
    "reject",
    "unreachable",
    "invalid",
    "voicemail",
    "machine",
    "hangup_after",
    "dtmf",
    "mix",
)

# Names used by the dialplan that recorded the reference traces, accepted as synonyms.
ALIASES = {"ring": "no_answer", "hangup": "hangup_after", "human": "answer", "rejected": "reject"}

SCRIPT_KEYS = frozenset({"say", "dtmf", "hangup_after", "seconds"})

DEFAULT_CAUSE = {"reject": 21, "unreachable": 3, "invalid": 1}

VOICEMAIL_GREETING = (
    "Hi, you have reached the voicemail of this number. Please leave a message after the tone."
)


class PlanError(ValueError):
    """A plan document that cannot be used; the message names the offending entry."""


@dataclass(frozen=True, slots=True)
class Say:
    at: float
    text: str | None = None
    wav: str | None = None
    tone_hz: float | None = None
    seconds: float = 1.0
    repeat: bool = False  # speak the same audio back to back until the call ends (load tests)
    caption: bool = False  # carry ``text`` inside the audio for the local agent (wire/caption.py)


@dataclass(frozen=True, slots=True)
class Press:
    at: float
    digits: str


@dataclass(frozen=True, slots=True)
class Choice:
    weight: float
    behaviour: Behaviour


@dataclass(frozen=True, slots=True)
class Behaviour:
    name: str
    after: float = 0.0  # seconds of ringing before answering (or before the failure for busy & co.)
    ringing: bool | None = None  # send a ringing indication first; None = technology default
    say: tuple[Say, ...] = ()
    dtmf: tuple[Press, ...] = ()
    hangup_after: float | None = None  # seconds after answer at which the party hangs up itself
    cause: int | None = None
    greeting: str = VOICEMAIL_GREETING
    choices: tuple[Choice, ...] = ()
    # An answering machine (``machine``, ``voicemail``): its greeting lasts ``greeting_s`` (None: as long as
    # the greeting text takes to say), then a beep of ``beep_hz`` for ``beep_s`` (``beep_hz`` None: no
    # beep), then silence until it hangs up ``hangup_after`` seconds after the beep (or greeting) ended.
    greeting_s: float | None = None
    beep_hz: float | None = 1000.0
    beep_s: float = 0.5

    @property
    def answers(self) -> bool:
        return self.name in ("answer", "voicemail", "machine", "hangup_after", "dtmf")

    @property
    def is_machine(self) -> bool:
        return self.name in MACHINES


MACHINES = frozenset({"machine", "voicemail"})
MACHINE_GREETING_AT = 0.3  # seconds after answer at which a machine starts its greeting
MACHINE_BEEP_GAP = 0.2  # seconds between the end of the greeting and the beep
MAX_GREETING_S = 20.0


@dataclass(frozen=True, slots=True)
class MachineTimeline:
    """When an answering machine does what, in seconds after answer."""

    greeting_at: float
    greeting_s: float
    beep_at: float | None
    beep_s: float
    hangup_at: float

    @property
    def greeting_end(self) -> float:
        return self.greeting_at + self.greeting_s

    @property
    def beep_end(self) -> float | None:
        return None if self.beep_at is None else self.beep_at + self.beep_s


def machine_timeline(b: Behaviour) -> MachineTimeline:
    from .audio import phrase_ms  # noqa: PLC0415 - audio is heavier than the plan needs otherwise

    greeting_s = b.greeting_s if b.greeting_s is not None else phrase_ms(b.greeting) / 1000
    greeting_at = MACHINE_GREETING_AT
    beep_at = greeting_at + greeting_s + MACHINE_BEEP_GAP if b.beep_hz else None
    ends = beep_at + b.beep_s if beep_at is not None else greeting_at + greeting_s
    hangup = b.hangup_after if b.hangup_after is not None else 60.0
    return MachineTimeline(greeting_at, greeting_s, beep_at, b.beep_s, ends + hangup)


def _number(value: Any, where: str, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanError(f"{where}: expected a number, got {value!r}")
    if value < minimum:
        raise PlanError(f"{where}: must be >= {minimum}, got {value!r}")
    return float(value)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise PlanError(f"{where}: expected true or false, got {value!r}")
    return value


def _parse_say(items: Any, where: str) -> tuple[Say, ...]:
    if not isinstance(items, list):
        raise PlanError(f"{where}: expected a list")
    out = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        if isinstance(item, str):
            item = {"at": 0.5, "text": item}
        if not isinstance(item, Mapping):
            raise PlanError(f"{w}: expected a mapping with 'at' and one of 'text', 'wav', 'tone'")
        sources = [k for k in ("text", "wav", "tone") if k in item]
        if len(sources) != 1:
            raise PlanError(f"{w}: give exactly one of 'text', 'wav', 'tone'")
        tone = item.get("tone")
        out.append(
            Say(
                at=_number(item.get("at", 0.0), f"{w}.at"),
                text=str(item["text"]) if "text" in item else None,
                wav=str(item["wav"]) if "wav" in item else None,
                tone_hz=_number(tone, f"{w}.tone", minimum=1.0) if tone is not None else None,
                seconds=_number(item.get("seconds", 1.0), f"{w}.seconds"),
                repeat=_flag(item.get("repeat", False), f"{w}.repeat"),
                caption=_flag(item.get("caption", False), f"{w}.caption"),
            )
        )
    return tuple(sorted(out, key=lambda s: s.at))


def _parse_dtmf(items: Any, where: str) -> tuple[Press, ...]:
    if not isinstance(items, list):
        raise PlanError(f"{where}: expected a list")
    out = []
    for i, item in enumerate(items):
        w = f"{where}[{i}]"
        if not isinstance(item, Mapping) or "digits" not in item:
            raise PlanError(f"{w}: expected a mapping with 'at' and 'digits'")
        digits = str(item["digits"])
        bad = [d for d in digits if d not in "0123456789*#ABCD"]
        if not digits or bad:
            raise PlanError(f"{w}.digits: only 0-9 * # A-D are DTMF digits, got {digits!r}")
        out.append(Press(at=_number(item.get("at", 0.0), f"{w}.at"), digits=digits))
    return tuple(sorted(out, key=lambda p: p.at))


def parse_behaviour(spec: Any, where: str = "behaviour") -> Behaviour:
    """Turn a plan entry (a name or a mapping) into a Behaviour, or raise PlanError naming `where`."""
    if isinstance(spec, str):
        spec = {"behaviour": spec}
    if not isinstance(spec, Mapping):
        raise PlanError(f"{where}: expected a behaviour name or a mapping, got {spec!r}")
    raw_name = spec.get("behaviour", spec.get("behavior"))
    if not isinstance(raw_name, str):
        raise PlanError(f"{where}: missing 'behaviour' (one of {', '.join(BEHAVIOURS)})")
    name = ALIASES.get(raw_name, raw_name)
    if name not in BEHAVIOURS:
        raise PlanError(f"{where}.behaviour: unknown behaviour {raw_name!r} (one of {', '.join(BEHAVIOURS)})")
    known = {
        "behaviour",
        "behavior",
        "after",
        "ringing",
        "say",
        "dtmf",
        "hangup_after",
        "seconds",
        "cause",
        "greeting",
        "greeting_s",
        "beep_hz",
        "beep_s",
        "choices",
        "weight",
    }
    unknown = sorted(set(spec) - known)
    if unknown:
        raise PlanError(f"{where}: unknown field(s) {', '.join(unknown)}")
    if "weight" in spec:  # a mix strips its choices' weights before parsing them
        raise PlanError(f"{where}.weight: a weight belongs to a choice of a mix")
    if "choices" in spec and name != "mix":
        raise PlanError(f"{where}.choices: only a mix has choices")
    machine_keys = sorted({"greeting_s", "beep_hz", "beep_s"} & set(spec))
    if machine_keys and name not in MACHINES:
        raise PlanError(f"{where}.{machine_keys[0]}: only an answering machine (machine, voicemail) has it")

    defaults = _defaults(raw_name, name)
    if name in ("answer", "dtmf") and SCRIPT_KEYS & set(spec):
        # A script given in the plan replaces the default one as a whole: a default hang-up or phrase
        # would otherwise cut across it.
        defaults = replace(defaults, say=(), dtmf=(), hangup_after=None)
    after = _number(spec["after"], f"{where}.after") if "after" in spec else defaults.after
    hangup_after = defaults.hangup_after
    for key in ("hangup_after", "seconds"):
        if key in spec:
            hangup_after = _number(spec[key], f"{where}.{key}")
    cause = defaults.cause
    if "cause" in spec:
        cause = int(_number(spec["cause"], f"{where}.cause", minimum=1))
    choices: tuple[Choice, ...] = ()
    if name == "mix":
        raw = spec.get("choices")
        if not isinstance(raw, list) or not raw:
            raise PlanError(f"{where}.choices: a mix needs a non-empty list of choices")
        built = []
        for i, c in enumerate(raw):
            cw = f"{where}.choices[{i}]"
            if not isinstance(c, Mapping):
                raise PlanError(f"{cw}: expected a mapping with 'weight' and 'behaviour'")
            weight = _number(c.get("weight", 1), f"{cw}.weight")
            inner = parse_behaviour({k: v for k, v in c.items() if k != "weight"}, cw)
            if inner.name == "mix":
                raise PlanError(f"{cw}: a mix cannot contain another mix")
            built.append(Choice(weight=weight, behaviour=inner))
        if sum(c.weight for c in built) <= 0:
            raise PlanError(f"{where}.choices: the weights add up to zero")
        choices = tuple(built)
    return replace(
        defaults,
        after=after,
        ringing=_flag(spec["ringing"], f"{where}.ringing") if "ringing" in spec else defaults.ringing,
        say=_parse_say(spec["say"], f"{where}.say") if "say" in spec else defaults.say,
        dtmf=_parse_dtmf(spec["dtmf"], f"{where}.dtmf") if "dtmf" in spec else defaults.dtmf,
        hangup_after=hangup_after,
        cause=cause,
        greeting=str(spec.get("greeting", defaults.greeting)),
        choices=choices,
        greeting_s=_greeting_s(spec, where, defaults.greeting_s),
        beep_hz=_beep_hz(spec, where, defaults.beep_hz),
        beep_s=_number(spec["beep_s"], f"{where}.beep_s") if "beep_s" in spec else defaults.beep_s,
    )


def _greeting_s(spec: Mapping[str, Any], where: str, default: float | None) -> float | None:
    if "greeting_s" not in spec or spec["greeting_s"] is None:
        return default
    value = _number(spec["greeting_s"], f"{where}.greeting_s")
    if value > MAX_GREETING_S:
        raise PlanError(f"{where}.greeting_s: at most {MAX_GREETING_S:g} seconds, got {value!r}")
    return value


def _beep_hz(spec: Mapping[str, Any], where: str, default: float | None) -> float | None:
    if "beep_hz" not in spec:
        return default
    if spec["beep_hz"] is None or spec["beep_hz"] is False:
        return None  # a machine without a beep
    return _number(spec["beep_hz"], f"{where}.beep_hz", minimum=1.0)


def _defaults(raw_name: str, name: str) -> Behaviour:
    """Per-behaviour defaults, matching the dialplan that recorded the reference traces."""
    if name == "answer":
        if raw_name == "human":
            return Behaviour(name="answer")
        # exten answer: Wait(1), Answer(), Wait(1), Playback(hello-world&tt-monkeys)
        return Behaviour(name="answer", after=1.0, say=(Say(at=1.5, text="Hello world. Monkeys."),))
    if name == "hangup_after":
        return Behaviour(name="hangup_after", after=0.0, hangup_after=2.5)
    if name == "dtmf":
        # exten dtmf: Wait(1), Answer(), Wait(1.5), SendDTMF(12), Playback(hello-world), Wait(1), Hangup(16)
        return Behaviour(
            name="dtmf",
            after=1.0,
            dtmf=(Press(at=2.0, digits="12"),),
            say=(Say(at=2.8, text="Hello world."),),
            hangup_after=5.2,
        )
    if name == "voicemail":
        return Behaviour(name="voicemail", after=4.0, hangup_after=60.0)
    if name == "machine":
        return Behaviour(name="machine", after=1.0, hangup_after=60.0)
    if name in DEFAULT_CAUSE:
        return Behaviour(name=name, cause=DEFAULT_CAUSE[name])
    return Behaviour(name=name)


@dataclass
class Plan:
    default: Behaviour = field(default_factory=lambda: parse_behaviour("answer"))
    numbers: dict[str, Behaviour] = field(default_factory=dict)
    prefixes: dict[str, Behaviour] = field(default_factory=dict)
    seed: int = 0
    base_dir: Path = field(default_factory=Path.cwd)
    _draws: dict[str, int] = field(default_factory=dict)

    def lookup(self, number: str) -> Behaviour:
        """The behaviour planned for `number` (before resolving a mix)."""
        bare = number.lstrip("+")
        for candidate in (number, bare, "+" + bare):
            if candidate in self.numbers:
                return self.numbers[candidate]
        best: tuple[int, Behaviour] | None = None
        for prefix, behaviour in self.prefixes.items():
            p = prefix.lstrip("+")
            if bare.startswith(p) and (best is None or len(p) > best[0]):
                best = (len(p), behaviour)
        if best is not None:
            return best[1]
        alias = ALIASES.get(number, number)
        if alias in BEHAVIOURS and alias != "mix":
            return parse_behaviour(number)
        return self.default

    def resolve(self, number: str, behaviour: Behaviour | None = None) -> Behaviour:
        """The concrete behaviour of this call: a `mix` is drawn from its choices.

        The draw depends only on the seed, the number and how many calls that number has had, so a
        load run is reproducible whatever order concurrent calls are placed in.
        """
        chosen = behaviour or self.lookup(number)
        if chosen.name != "mix":
            return chosen
        bare = number.lstrip("+")
        n = self._draws.get(bare, 0)
        self._draws[bare] = n + 1
        rng = random.Random(f"{self.seed}|{bare}|{n}")  # noqa: S311 - a simulation, not security
        weights = [c.weight for c in chosen.choices]
        return rng.choices(chosen.choices, weights=weights, k=1)[0].behaviour

    def resolve_path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.base_dir / path


def parse_plan(doc: Any, base_dir: Path | None = None) -> Plan:
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping):
        raise PlanError("plan: expected a mapping with 'default', 'numbers', 'prefixes', 'seed'")
    unknown = sorted(set(doc) - {"default", "numbers", "prefixes", "seed"})
    if unknown:
        raise PlanError(f"plan: unknown key(s) {', '.join(unknown)}")
    plan = Plan(base_dir=base_dir or Path.cwd())
    if "default" in doc:
        plan.default = parse_behaviour(doc["default"], "default")
    seed = doc.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise PlanError("seed: expected an integer")
    plan.seed = seed
    for section in ("numbers", "prefixes"):
        entries = doc.get(section) or {}
        if not isinstance(entries, Mapping):
            raise PlanError(f"{section}: expected a mapping of number to behaviour")
        target = plan.numbers if section == "numbers" else plan.prefixes
        for key, spec in entries.items():
            target[str(key)] = parse_behaviour(spec, f"{section}[{key!s}]")
    return plan


def load_plan(path: str | Path) -> Plan:
    """Read a plan file: YAML when it ends in .yaml/.yml, JSON otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanError(f"cannot read plan {p}: {exc.strerror}") from exc
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlanError(f"{p}: invalid YAML: {exc}") from exc
    else:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlanError(f"{p}: invalid JSON: {exc}") from exc
    return parse_plan(doc, base_dir=p.resolve().parent)
