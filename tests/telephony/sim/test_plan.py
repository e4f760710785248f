"""The call plan (telephony/sim/plan.py): parsing, defaults, errors that name the field, lookup and `mix`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from telephony.sim.plan import (
    BEHAVIOURS,
    VOICEMAIL_GREETING,
    Behaviour,
    Plan,
    PlanError,
    Press,
    Say,
    load_plan,
    parse_behaviour,
    parse_plan,
)

# ------------------------------------------------------------------------------------ names and mappings


@pytest.mark.parametrize("name", [b for b in BEHAVIOURS if b != "mix"])
def test_every_behaviour_name_parses_to_itself(name: str) -> None:
    assert parse_behaviour(name).name == name
    assert parse_behaviour({"behaviour": name}).name == name


def test_american_spelling_is_accepted() -> None:
    assert parse_behaviour({"behavior": "busy"}).name == "busy"


@pytest.mark.parametrize(
    ("alias", "name"),
    [("ring", "no_answer"), ("hangup", "hangup_after"), ("human", "answer"), ("rejected", "reject")],
)
def test_aliases_from_the_recording_dialplan(alias: str, name: str) -> None:
    assert parse_behaviour(alias).name == name
    assert parse_behaviour({"behaviour": alias}).name == name


def test_a_mapping_overrides_the_defaults() -> None:
    b = parse_behaviour(
        {
            "behaviour": "answer",
            "after": 2,
            "ringing": False,
            "say": [{"at": 1.5, "text": "second"}, {"at": 0.5, "text": "first"}, "shorthand"],
            "dtmf": [{"at": 3, "digits": "#9"}, {"digits": "*"}],
            "hangup_after": 20,
            "cause": 21,
            "greeting": "Hi",
        }
    )
    assert b.after == 2.0 and isinstance(b.after, float)
    assert b.ringing is False
    # sorted by time; a bare string is said at 0.5 s
    assert [s.text for s in b.say] == ["first", "shorthand", "second"]
    assert b.say[1] == Say(at=0.5, text="shorthand")
    assert b.dtmf == (Press(at=0.0, digits="*"), Press(at=3.0, digits="#9"))
    assert b.hangup_after == 20.0
    assert b.cause == 21
    assert b.greeting == "Hi"


def test_say_sources_wav_and_tone() -> None:
    b = parse_behaviour(
        {
            "behaviour": "answer",
            "say": [
                {"at": 1, "wav": "greeting.wav"},
                {"at": 2, "tone": 1000, "seconds": 0.25, "repeat": True},
            ],
        }
    )
    assert b.say[0] == Say(at=1.0, wav="greeting.wav")
    assert b.say[1] == Say(at=2.0, tone_hz=1000.0, seconds=0.25, repeat=True)


@pytest.mark.parametrize("key", ["say", "dtmf", "hangup_after", "seconds"])
def test_a_planned_script_replaces_the_default_script(key: str) -> None:
    """answer/dtmf defaults carry a script (phrase, digits, hang-up); any script key in the plan drops it all,
    so a default hang-up or phrase does not cut across the planned one."""
    value: Any = {"say": ["Hi"], "dtmf": [{"at": 1, "digits": "9"}], "hangup_after": 7, "seconds": 7}[key]
    for name in ("answer", "dtmf"):
        b = parse_behaviour({"behaviour": name, key: value})
        assert b.after == 1.0  # not part of the script: the default stays
        assert b.say == ((Say(at=0.5, text="Hi"),) if key == "say" else ())
        assert b.dtmf == ((Press(at=1.0, digits="9"),) if key == "dtmf" else ())
        assert b.hangup_after == (7.0 if key in ("hangup_after", "seconds") else None)


def test_without_script_keys_the_default_script_stays() -> None:
    assert parse_behaviour({"behaviour": "dtmf", "after": 0}).dtmf == (Press(at=2.0, digits="12"),)
    assert parse_behaviour({"behaviour": "answer", "ringing": True}).say == parse_behaviour("answer").say


def test_seconds_is_a_synonym_of_hangup_after() -> None:
    assert parse_behaviour({"behaviour": "hangup_after", "seconds": 0.5}).hangup_after == 0.5


# -------------------------------------------------------------------------------------------- defaults


def test_answer_defaults_match_the_recording_dialplan() -> None:
    b = parse_behaviour("answer")
    assert b.after == 1.0
    assert b.say == (Say(at=1.5, text="Hello world. Monkeys."),)
    assert b.dtmf == () and b.hangup_after is None and b.cause is None and b.ringing is None
    assert b.answers


def test_human_answers_at_once_and_stays_silent() -> None:
    b = parse_behaviour("human")
    assert b == Behaviour(name="answer")
    assert b.after == 0.0 and b.say == ()


def test_hangup_after_defaults() -> None:
    b = parse_behaviour("hangup_after")
    assert b.after == 0.0 and b.hangup_after == 2.5 and b.answers
    assert parse_behaviour("hangup") == b


def test_dtmf_defaults() -> None:
    b = parse_behaviour("dtmf")
    assert b.after == 1.0
    assert b.dtmf == (Press(at=2.0, digits="12"),)
    assert b.say == (Say(at=2.8, text="Hello world."),)
    assert b.hangup_after == 5.2
    assert b.answers


def test_voicemail_defaults() -> None:
    b = parse_behaviour("voicemail")
    assert b.after == 4.0 and b.hangup_after == 60.0 and b.greeting == VOICEMAIL_GREETING
    assert b.answers


@pytest.mark.parametrize(("name", "cause"), [("reject", 21), ("unreachable", 3), ("invalid", 1)])
def test_failure_behaviours_carry_their_cause(name: str, cause: int) -> None:
    b = parse_behaviour(name)
    assert b.cause == cause and b.after == 0.0 and not b.answers


@pytest.mark.parametrize("name", ["busy", "congestion", "no_answer"])
def test_indication_behaviours_have_no_cause_and_do_not_answer(name: str) -> None:
    b = parse_behaviour(name)
    assert b.cause is None and b.after == 0.0 and not b.answers and b.say == ()


def test_an_explicit_cause_overrides_the_default() -> None:
    assert parse_behaviour({"behaviour": "reject", "cause": 27}).cause == 27


def test_the_default_plan_answers_everything() -> None:
    plan = parse_plan(None)
    assert plan.default == parse_behaviour("answer")
    assert plan.numbers == {} and plan.prefixes == {} and plan.seed == 0
    assert parse_plan({}).default == plan.default


# -------------------------------------------------------------------------------------------- errors


def plan_error(doc: Any) -> str:
    with pytest.raises(PlanError) as info:
        parse_plan(doc)
    return str(info.value)


def test_unknown_behaviour_names_the_entry() -> None:
    msg = plan_error({"numbers": {"+15550100001": "bogus"}})
    assert msg.startswith("numbers[+15550100001].behaviour: unknown behaviour 'bogus'")
    assert "busy" in msg  # lists the valid names


def test_unknown_behaviour_in_a_prefix_and_in_the_default() -> None:
    assert plan_error({"prefixes": {"+1555": {"behaviour": "nope"}}}).startswith(
        "prefixes[+1555].behaviour: unknown behaviour 'nope'"
    )
    assert plan_error({"default": "nope"}).startswith("default.behaviour: unknown behaviour 'nope'")


def test_missing_behaviour_names_the_entry() -> None:
    assert plan_error({"numbers": {"1": {"after": 1}}}).startswith("numbers[1]: missing 'behaviour'")


def test_unknown_field_names_the_entry_and_the_field() -> None:
    msg = plan_error({"numbers": {"+1555": {"behaviour": "answer", "colour": "red", "aftr": 1}}})
    assert msg == "numbers[+1555]: unknown field(s) aftr, colour"


@pytest.mark.parametrize("digits", ["1x2", "", "E", "12 "])
def test_bad_dtmf_digits_name_the_path(digits: str) -> None:
    msg = plan_error(
        {
            "numbers": {
                "7": {"behaviour": "dtmf", "dtmf": [{"at": 1, "digits": "1"}, {"at": 2, "digits": digits}]}
            }
        }
    )
    assert msg.startswith("numbers[7].dtmf[1].digits: only 0-9 * # A-D are DTMF digits")
    assert repr(digits) in msg


def test_dtmf_entry_without_digits() -> None:
    assert plan_error({"default": {"behaviour": "dtmf", "dtmf": [{"at": 1}]}}).startswith("default.dtmf[0]:")


@pytest.mark.parametrize("value", ["soon", None, True, [1], {"s": 1}])
def test_non_number_after_names_the_path(value: Any) -> None:
    msg = plan_error({"numbers": {"42": {"behaviour": "answer", "after": value}}})
    assert msg == f"numbers[42].after: expected a number, got {value!r}"


def test_negative_numbers_are_refused() -> None:
    assert (
        plan_error({"default": {"behaviour": "answer", "after": -1}})
        == "default.after: must be >= 0.0, got -1"
    )
    assert plan_error({"default": {"behaviour": "hangup_after", "seconds": -0.5}}).startswith(
        "default.seconds:"
    )
    assert plan_error({"default": {"behaviour": "reject", "cause": 0}}).startswith(
        "default.cause: must be >= 1"
    )


def test_bad_say_entries_name_the_path() -> None:
    assert plan_error({"default": {"behaviour": "answer", "say": "hi"}}) == "default.say: expected a list"
    assert plan_error({"default": {"behaviour": "answer", "say": [{"at": 1}]}}).startswith(
        "default.say[0]: give exactly one of"
    )
    assert plan_error({"default": {"behaviour": "answer", "say": [{"text": "a", "tone": 400}]}}).startswith(
        "default.say[0]: give exactly one of"
    )
    assert plan_error(
        {"default": {"behaviour": "answer", "say": ["ok", {"at": "x", "text": "a"}]}}
    ).startswith("default.say[1].at: expected a number")
    assert plan_error({"default": {"behaviour": "answer", "say": [{"tone": 0}]}}).startswith(
        "default.say[0].tone: must be >= 1.0"
    )
    assert plan_error({"default": {"behaviour": "answer", "say": [3]}}).startswith(
        "default.say[0]: expected a mapping"
    )


@pytest.mark.parametrize("choices", [None, [], "busy"])
def test_empty_mix_names_the_path(choices: Any) -> None:
    spec: dict[str, Any] = {"behaviour": "mix"}
    if choices is not None:
        spec["choices"] = choices
    assert (
        plan_error({"prefixes": {"+1555": spec}})
        == "prefixes[+1555].choices: a mix needs a non-empty list of choices"
    )


def test_nested_mix_names_the_choice() -> None:
    inner = {"behaviour": "mix", "choices": [{"weight": 1, "behaviour": "busy"}]}
    msg = plan_error(
        {
            "prefixes": {
                "+1555": {
                    "behaviour": "mix",
                    "choices": [{"weight": 1, "behaviour": "answer"}, {"weight": 2, **inner}],
                }
            }
        }
    )
    assert msg == "prefixes[+1555].choices[1]: a mix cannot contain another mix"


def test_zero_weights_name_the_path() -> None:
    msg = plan_error(
        {
            "numbers": {
                "9": {
                    "behaviour": "mix",
                    "choices": [{"weight": 0, "behaviour": "answer"}, {"weight": 0, "behaviour": "busy"}],
                }
            }
        }
    )
    assert msg == "numbers[9].choices: the weights add up to zero"


def test_bad_choice_entries_name_the_choice() -> None:
    assert plan_error({"default": {"behaviour": "mix", "choices": ["busy"]}}).startswith(
        "default.choices[0]: expected a mapping"
    )
    assert plan_error(
        {"default": {"behaviour": "mix", "choices": [{"weight": -1, "behaviour": "busy"}]}}
    ).startswith("default.choices[0].weight: must be >= 0.0")
    assert plan_error(
        {"default": {"behaviour": "mix", "choices": [{"weight": 1, "behaviour": "zzz"}]}}
    ).startswith("default.choices[0].behaviour: unknown behaviour 'zzz'")
    assert plan_error(
        {"default": {"behaviour": "mix", "choices": [{"weight": 1, "behaviour": "answer", "after": "later"}]}}
    ).startswith("default.choices[0].after:")


def test_unknown_top_level_key() -> None:
    assert plan_error({"numbers": {}, "prefix": {}, "zzz": 1}) == "plan: unknown key(s) prefix, zzz"


def test_top_level_shape_errors() -> None:
    assert plan_error(["busy"]).startswith("plan: expected a mapping")
    assert plan_error({"seed": "7"}) == "seed: expected an integer"
    assert plan_error({"seed": True}) == "seed: expected an integer"
    assert plan_error({"numbers": ["busy"]}) == "numbers: expected a mapping of number to behaviour"
    assert plan_error({"prefixes": "busy"}) == "prefixes: expected a mapping of number to behaviour"
    assert plan_error({"numbers": {"1": 5}}).startswith("numbers[1]: expected a behaviour name or a mapping")


def test_plan_error_is_a_value_error() -> None:
    assert issubclass(PlanError, ValueError)


# ------------------------------------------------------------------------------------------- files


YAML_PLAN = """\
seed: 7
default: busy
numbers:
  "+15550100001": congestion
  "+15550100002": {behaviour: answer, after: 2, say: [{at: 0.5, text: "Hello?"}], hangup_after: 20}
prefixes:
  "+1555020":
    behaviour: mix
    choices:
      - {weight: 3, behaviour: answer}
      - {weight: 1, behaviour: busy}
"""


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_load_plan_yaml(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"plan{suffix}"
    path.write_text(YAML_PLAN)
    plan = load_plan(path)
    assert plan.seed == 7
    assert plan.default.name == "busy"
    assert plan.numbers["+15550100001"].name == "congestion"
    b = plan.numbers["+15550100002"]
    assert (b.name, b.after, b.hangup_after, b.say) == ("answer", 2.0, 20.0, (Say(at=0.5, text="Hello?"),))
    mix = plan.prefixes["+1555020"]
    assert mix.name == "mix" and [(c.weight, c.behaviour.name) for c in mix.choices] == [
        (3, "answer"),
        (1, "busy"),
    ]
    assert plan.base_dir == tmp_path.resolve()


def test_load_plan_json_and_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps({"numbers": {"100": {"behaviour": "answer", "say": [{"at": 0, "wav": "a.wav"}]}}})
    )
    plan = load_plan(str(path))
    assert plan.numbers["100"].say[0].wav == "a.wav"
    assert plan.resolve_path("a.wav") == tmp_path.resolve() / "a.wav"
    assert plan.resolve_path("/abs/b.wav") == Path("/abs/b.wav")
    # any suffix other than .yaml/.yml is JSON
    other = tmp_path / "plan.txt"
    other.write_text('{"default": "busy"}')
    assert load_plan(other).default.name == "busy"


def test_load_plan_yaml_with_unquoted_numbers(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("numbers:\n  15550100001: busy\n")
    plan = load_plan(path)
    assert plan.lookup("+15550100001").name == "busy"


def test_load_plan_empty_yaml_is_the_default_plan(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("")
    assert load_plan(path).default == parse_behaviour("answer")


def test_load_plan_errors(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"cannot read plan .*missing\.yaml"):
        load_plan(tmp_path / "missing.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("numbers: [unclosed\n")
    with pytest.raises(PlanError, match=r"bad\.yaml: invalid YAML"):
        load_plan(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{'single': 'quotes'}")
    with pytest.raises(PlanError, match=r"bad\.json: invalid JSON"):
        load_plan(bad_json)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("numbers:\n  '+1555': {behaviour: answer, after: soon}\n")
    with pytest.raises(PlanError, match=r"^numbers\[\+1555\]\.after: expected a number, got 'soon'$"):
        load_plan(wrong)


# ------------------------------------------------------------------------------------------- lookup


@pytest.fixture
def plan() -> Plan:
    return parse_plan(
        {
            "default": "congestion",
            "numbers": {"+15550100001": "busy", "15550100002": "reject", "+1555020999": "invalid"},
            "prefixes": {"+1555": "unreachable", "+155502": "no_answer", "1555020": "hangup_after"},
        }
    )


def test_exact_number_with_and_without_plus(plan: Plan) -> None:
    assert plan.lookup("+15550100001").name == "busy"
    assert plan.lookup("15550100001").name == "busy"
    assert plan.lookup("15550100002").name == "reject"
    assert plan.lookup("+15550100002").name == "reject"


def test_exact_number_beats_a_prefix(plan: Plan) -> None:
    assert plan.lookup("+1555020999").name == "invalid"
    assert plan.lookup("1555020999").name == "invalid"


def test_longest_prefix_wins(plan: Plan) -> None:
    assert plan.lookup("+15550299999").name == "no_answer"  # +155502 (6 digits) over +1555
    assert plan.lookup("+15550201234").name == "hangup_after"  # 1555020 (7 digits), '+' ignored
    assert plan.lookup("15550201234").name == "hangup_after"
    assert plan.lookup("+15559999999").name == "unreachable"


def test_behaviour_name_numbers(plan: Plan) -> None:
    assert plan.lookup("busy").name == "busy"
    assert plan.lookup("voicemail") == parse_behaviour("voicemail")
    assert plan.lookup("ring").name == "no_answer"
    assert plan.lookup("human") == parse_behaviour("human")
    assert plan.lookup("mix").name == "congestion"  # a mix has no meaning without choices: the default


def test_a_planned_number_beats_a_behaviour_name() -> None:
    plan = parse_plan({"numbers": {"busy": "answer"}})
    assert plan.lookup("busy").name == "answer"


def test_default_for_anything_else(plan: Plan) -> None:
    assert plan.lookup("+4420000000").name == "congestion"
    assert plan.lookup("alice").name == "congestion"
    assert Plan().lookup("+4420000000") == parse_behaviour("answer")


def test_resolve_passes_concrete_behaviours_through(plan: Plan) -> None:
    assert plan.resolve("+15550100001").name == "busy"
    given = parse_behaviour({"behaviour": "hangup_after", "seconds": 1})
    assert plan.resolve("+15550100001", given) is given


# ---------------------------------------------------------------------------------------------- mix


def mix_plan(seed: int, weights: tuple[float, float, float] = (3, 1, 1)) -> Plan:
    return parse_plan(
        {
            "seed": seed,
            "prefixes": {
                "+1555": {
                    "behaviour": "mix",
                    "choices": [
                        {"weight": weights[0], "behaviour": "answer", "after": 0.5},
                        {"weight": weights[1], "behaviour": "busy"},
                        {"weight": weights[2], "behaviour": "no_answer"},
                    ],
                }
            },
        }
    )


NUMBERS = [f"+1555000{i:04d}" for i in range(5)]


def draw(plan: Plan, n: int) -> list[str]:
    return [plan.resolve(NUMBERS[i % len(NUMBERS)]).name for i in range(n)]


def test_mix_draws_are_concrete_behaviours_with_their_parameters() -> None:
    plan = mix_plan(1)
    drawn = [plan.resolve("+15550000001") for _ in range(50)]
    assert {b.name for b in drawn} <= {"answer", "busy", "no_answer"}
    assert all(b.after == 0.5 for b in drawn if b.name == "answer")


def test_mix_is_reproducible_for_the_same_seed_and_numbers() -> None:
    assert draw(mix_plan(7), 300) == draw(mix_plan(7), 300)


def test_mix_does_not_depend_on_the_order_of_other_numbers() -> None:
    a, b = mix_plan(7), mix_plan(7)
    seq_a = [a.resolve("+15550000001") for _ in range(20)]
    for _ in range(20):  # interleave calls to another number on the second plan
        b.resolve("+15550000002")
    seq_b = [b.resolve("+15550000001") for _ in range(20)]
    assert seq_a == seq_b


def test_mix_differs_across_seeds() -> None:
    runs = {tuple(draw(mix_plan(seed), 100)) for seed in range(5)}
    assert len(runs) == 5


def test_mix_follows_the_weights_over_2000_draws() -> None:
    counts = Counter(draw(mix_plan(123), 2000))
    assert sum(counts.values()) == 2000
    # expected 1200 / 400 / 400; 4 standard deviations is about 90 / 72
    assert abs(counts["answer"] - 1200) < 100, counts
    assert abs(counts["busy"] - 400) < 90, counts
    assert abs(counts["no_answer"] - 400) < 90, counts


def test_mix_choice_with_zero_weight_is_never_drawn() -> None:
    counts = Counter(draw(mix_plan(5, (1, 0, 1)), 500))
    assert counts["busy"] == 0 and counts["answer"] > 150 and counts["no_answer"] > 150
