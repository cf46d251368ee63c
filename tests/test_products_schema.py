"""Product definitions: the five shipped files, and clear errors (with paths) for broken ones."""

from __future__ import annotations

import copy
import datetime as dt
import shutil
from pathlib import Path

import pytest
import yaml

from products.catalogue import (
    DEFINITIONS_DIR,
    DefinitionError,
    format_loc,
    load_catalogue,
    load_definition,
    parse_definition,
    reference_rates,
)
from scoring import compile_all, evaluate_all
from scoring.sample import random_features

FIVE = {"tech_innovation", "tax_credit", "per_mu", "two_healthy", "new_villager"}


def _data(code: str) -> dict:
    return yaml.safe_load((DEFINITIONS_DIR / f"{code}.yaml").read_text(encoding="utf-8"))


def _issues(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as e:
        parse_definition(data, "x.yaml")
    return e.value.issues


def test_the_five_products_load_with_seed_numbers():
    cat = load_catalogue()
    assert set(cat) == FIVE
    tech, tax, mu, th, nv = (cat[c] for c in ("tech_innovation", "tax_credit", "per_mu", "two_healthy",
                                              "new_villager"))
    assert tech.guarantee.fee_pct == 0.48 and tech.limit.max_cny == 10_000_000
    assert tech.subsidy[0].share_of_interest == 0.40 and tech.risk_compensation.loss_share == 0.30
    assert tech.subsidy[0].when[0].field == "registry.district" and tech.subsidy[0].when[0].value == "ouhai"
    assert len(list(tech.indicators())) == 11 and len(tech.dimensions) == 3
    assert tax.rate.floor == 3.0 and tax.guarantee.max_fee_pct == 1.0
    assert len(tax.segments.labels) == 4 and len(list(tax.indicators())) == 6 and len(tax.dimensions) == 4
    assert mu.grading.eligible == ["A+", "A"] and mu.limit.cap_by_grade == {"A+": 10_000_000, "A": 5_000_000}
    guaranteed = {o.code: o for o in mu.collateral_options}["guaranteed"]
    assert guaranteed.guarantee.fee_pct_by_grade == {"A+": 0.5, "A": 0.8} and mu.service.contact_days == 2
    assert mu.collateral == "unsecured" and mu.service.working_days
    assert th.scale == 1000 and "D" not in th.grading.eligible
    floors = {o.code: o.rate_floor for o in nv.collateral_options}
    assert nv.limit.max_cny == 15_000_000 and floors == {"unsecured": 3.98, "secured": 3.20}
    assert all(c.applies_to == ["grade_cap"] for c in nv.limit.coefficients)
    assert len(list(nv.indicators())) == 17 and len(nv.dimensions) == 5


def test_a_sixth_product_is_a_new_file_only(tmp_path: Path):
    folder = tmp_path / "defs"
    shutil.copytree(DEFINITIONS_DIR, folder)
    data = _data("tax_credit")
    data["code"] = "tax_credit_green"
    data["name"] = {"zh": "绿色税收贷", "en": "Green tax loan"}
    (folder / "tax_credit_green.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cat = load_catalogue(folder)
    assert set(cat) == FIVE | {"tax_credit_green"}
    plans = compile_all(cat, reference_rates(dt.date(2025, 12, 31)))
    res = evaluate_all(plans, random_features(50, seed=3))
    assert res["tax_credit_green"].index_cents.tolist() == res["tax_credit"].index_cents.tolist()


def test_loc_formatting():
    assert format_loc(("dimensions", "capability", "indicators", 2, "weight")) == \
        "dimensions.capability.indicators[2].weight"
    assert format_loc(("dimensions", "a", "indicators", 0, "scoring", "bins", "edges")) == \
        "dimensions.a.indicators[0].scoring.edges"


def test_weights_not_summing():
    data = _data("tech_innovation")
    data["dimensions"]["capability"]["indicators"][2]["weight"] = 5
    issues = dict(_issues(data))
    assert "indicator weights sum to 36" in issues["dimensions.capability.indicators"]
    data = _data("tech_innovation")
    data["dimensions"]["output"]["weight"] = 30
    paths = [p for p, _ in _issues(data)]
    assert "dimensions" in paths and "dimensions.output.indicators" in paths


def test_unordered_cutoffs():
    data = _data("tax_credit")
    data["grading"]["grades"][1]["min_index"] = 85
    issues = dict(_issues(data))
    assert "strictly decreasing" in issues["grading.grades[1].min_index"]


def test_unknown_fields_are_named_with_their_path():
    data = _data("per_mu")
    data["dimensions"]["efficiency"]["indicators"][1]["wieght"] = 3
    data["limitt"] = {}
    issues = dict(_issues(data))
    assert "unknown field" in issues["dimensions.efficiency.indicators[1].wieght"]
    assert "unknown field" in issues["limitt"]


def test_negative_caps_and_bad_numbers():
    data = _data("per_mu")
    data["limit"]["cap_by_grade"]["A"] = -5
    data["rate"]["floor"] = -1
    issues = dict(_issues(data))
    assert "greater than or equal to 0" in issues["limit.cap_by_grade.A"]
    assert "rate.floor" in issues


def test_unknown_feature_fields_and_undeclared_sources():
    data = _data("new_villager")
    data["dimensions"]["solvency"]["indicators"][0]["field"] = "financials.debt_ratio_typo"
    data["gates"][0]["all_of"][0]["field"] = "tech.high_tech_enterprise"  # tech is not declared
    issues = dict(_issues(data))
    assert "unknown feature field" in issues["dimensions.solvency.indicators[0].field"]
    assert "not declared under `sources`" in issues["gates[0].all_of[0].field"]


def test_cross_rules():
    data = _data("tax_credit")
    data["rate"]["floor"] = 6
    data["rate"]["spread_by_cell"]["mature"]["A"] = [0.5, 0.2]
    data["guarantee"]["fee_pct_by_grade"]["C"] = 1.2
    data["limit"]["cap_by_segment"]["mature"] = 100
    data["segments"]["edges"] = [5, 3, 10]
    data["dimensions"]["scale"]["indicators"][0]["scoring"]["scores"] = [0, 0.5, 0.2, 0.7, 0.85, 1.0]
    data["gates"][2]["all_of"][0]["value"] = ["A", "Q"]
    data["grading"]["eligible"] = ["A", "E"]
    paths = dict(_issues(data))
    assert "above ceiling" in paths["rate.floor"]
    assert "band low" in paths["rate.spread_by_cell.mature.A"]
    assert "above the maximum" in paths["guarantee"]
    assert "must not decrease" in paths["limit.cap_by_segment"]
    assert "strictly increasing" in paths["segments.edges"]
    assert "monotone" in paths["dimensions.scale.indicators[0].scoring.scores"]
    assert "not among" in paths["gates[2].all_of[0].value"]
    assert "unknown grade" in paths["grading.eligible[1]"]


def test_gate_shape_and_operators():
    data = _data("tax_credit")
    data["gates"][0] = {"code": "x", "reason": "DISHONEST_DEBTOR",
                        "all_of": [{"field": "judicial.dishonest_debtor", "op": "like", "value": 1}]}
    data["gates"][1] = {"code": "y", "reason": "NO_SUCH_REASON",
                        "all_of": [{"field": "registry.abnormal_operation", "op": "is_false"}],
                        "any_of": [{"field": "registry.abnormal_operation", "op": "is_false"}]}
    issues = _issues(data)
    paths = [p for p, _ in issues]
    assert "gates[0].all_of[0].op" in paths
    assert "gates[1]" in paths


def test_missing_score_policy_must_be_explicit():
    data = _data("new_villager")
    ind = data["dimensions"]["solvency"]["indicators"][3]
    del ind["on_missing"]
    data2 = copy.deepcopy(_data("new_villager"))
    del data2["dimensions"]["solvency"]["indicators"][3]["missing_score"]
    assert "required field missing" in dict(_issues(data))["dimensions.solvency.indicators[3].on_missing"]
    assert "missing_score" in dict(_issues(data2))["dimensions.solvency.indicators[3]"]


def test_file_errors(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("code: [unclosed\n", encoding="utf-8")
    with pytest.raises(DefinitionError, match="invalid YAML"):
        load_definition(bad)
    with pytest.raises(DefinitionError, match="cannot read"):
        load_definition(tmp_path / "absent.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(DefinitionError, match="mapping"):
        load_definition(listy)


def test_reference_rates_are_dated():
    assert reference_rates(dt.date(2025, 6, 1))["lpr_1y"] == 3.0
    assert reference_rates(dt.date(2024, 12, 1))["lpr_1y"] == 3.10
    assert "lpr_1y" not in reference_rates(dt.date(2020, 1, 1))


# --- guard rails: units, bounds, the bank's policy, every error at once ----------------------------

def test_every_number_in_the_schema_has_a_unit_and_bounds():
    """Walk every model of the schema: each numeric field (or list/dict of numbers) carries a unit and
    both a lower and an upper bound."""
    import typing

    from pydantic import BaseModel

    from products import schema

    def numeric_leaves(annotation):
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base, *meta = typing.get_args(annotation)
            if base in (int, float):
                yield base, meta
            else:
                yield from numeric_leaves(base)
        elif annotation in (int, float):
            yield annotation, []
        else:
            for arg in typing.get_args(annotation):
                yield from numeric_leaves(arg)

    from pydantic.fields import FieldInfo

    def flat(meta):
        for m in meta:
            if isinstance(m, FieldInfo):
                yield m
                yield from flat(m.metadata)
            else:
                yield m

    models = [m for m in vars(schema).values() if isinstance(m, type) and issubclass(m, BaseModel)
              and m.__module__ == schema.__name__]
    unchecked, checked = [], []
    for model in models:
        for name, info in model.model_fields.items():
            annotation = typing.Annotated[(info.annotation, info)]
            for _, meta in numeric_leaves(annotation):
                meta = list(flat(meta))
                extra = [m.json_schema_extra for m in meta if getattr(m, "json_schema_extra", None)]
                unit = any("unit" in e for e in extra)
                bounds = [type(m).__name__ for m in meta]
                low = any(b in ("Ge", "Gt") for b in bounds)
                high = any(b in ("Le", "Lt") for b in bounds)
                checked.append(f"{model.__name__}.{name}")
                if not (unit and low and high):
                    unchecked.append(f"{model.__name__}.{name}")
    assert len(models) > 20 and len(checked) > 50 and "Guarantee.fee_pct" in checked
    assert unchecked == [], unchecked


def test_a_250_percent_fee_a_huge_limit_and_a_negative_subsidised_rate_are_refused():
    data = _data("tech_innovation")
    data["guarantee"]["fee_pct"] = 250
    issues = dict(_issues(data))
    assert "less than or equal to 100" in issues["guarantee.fee_pct"]
    data["guarantee"]["fee_pct"] = 3.5  # a percent, but above the bank's 3% policy maximum
    issues = dict(_issues(data))
    assert "above the policy maximum 3%" in issues["guarantee.fee_pct"]
    assert "超过政策上限" in issues["guarantee.fee_pct"]
    data = _data("tech_innovation")
    data["limit"]["max_cny"] = 1e30
    assert "limit.max_cny" in dict(_issues(data))
    data["limit"]["max_cny"] = 9e7  # a plausible number, above the policy's 50m
    assert "policy maximum" in dict(_issues(data))["limit.max_cny"]
    data = _data("tech_innovation")
    data["subsidy"] = [{"points_pp": 3.5, "note": {"zh": "贴息", "en": "subsidy"}}]
    messages = [m for p, m in _issues(data) if p == "subsidy[0].points_pp"]
    assert any("below 0" in m for m in messages) and any("above the policy maximum" in m for m in messages)
    data["subsidy"] = [{"share_of_interest": 1.5, "note": {"zh": "贴息", "en": "subsidy"}}]
    assert "subsidy[0].share_of_interest" in dict(_issues(data))


def test_three_independent_errors_are_reported_at_once_with_paths_in_two_languages():
    data = _data("per_mu")
    data["limitt"] = {}                                                     # structural: unknown key
    data["collateral_options"][1]["guarantee"]["fee_pct_by_grade"]["A"] = 250  # structural: out of bounds
    data["dimensions"]["efficiency"]["indicators"][0]["weight"] = 20        # semantic: weights
    data["rate"]["spread_by_grade"]["A"] = [0.9, 0.4]                       # semantic: band
    issues = dict(_issues(data))
    assert "unknown field" in issues["limitt"]
    assert "collateral_options[1].guarantee.fee_pct_by_grade.A" in issues
    assert "indicator weights sum to 40" in issues["dimensions.efficiency.indicators"]
    assert "band low" in issues["rate.spread_by_grade.A"]
    for message in issues.values():
        en, zh = message.split(" / ", 1)
        assert en and any("\u4e00" <= ch <= "\u9fff" for ch in zh), message


def test_the_policy_is_one_file_the_settings_can_replace(tmp_path: Path, monkeypatch):
    from features.settings import get_settings
    from products.policy import POLICY_FILE

    strict = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))
    strict["guarantee_fee_pct_max"] = 0.4
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(strict), encoding="utf-8")
    monkeypatch.setenv("INDEXLOAN_PRODUCT_POLICY_FILE", str(path))
    get_settings.cache_clear()
    try:
        issues = dict(_issues(_data("tech_innovation")))  # its 0.48% fee is now above the maximum
        assert "above the policy maximum 0.4%" in issues["guarantee.fee_pct"]
    finally:
        monkeypatch.delenv("INDEXLOAN_PRODUCT_POLICY_FILE")
        get_settings.cache_clear()
    parse_definition(_data("tech_innovation"))


def test_unreachable_cells_are_detected():
    data = _data("tax_credit")
    data["grading"]["cutoffs_by_segment"]["startup"]["A"] = 80  # a start-up scores at most 79
    issues = dict(_issues(data))
    assert "startup/A is unreachable" in issues["grading.cutoffs_by_segment.startup.A"]
    assert "79" in issues["grading.cutoffs_by_segment.startup.A"]
    del data["grading"]["cutoffs_by_segment"]  # one table for every stage: the old definition
    assert "highest possible index is 79" in dict(_issues(data))["grading.grades[0].min_index"]


def test_stage_tilt_is_configured_and_enforced():
    data = _data("tax_credit")
    assert data["rate"]["stage_tilt"] == "smaller_cheaper"
    data["rate"]["stage_tilt"] = "larger_cheaper"  # the shipped spreads tilt the other way
    assert "must not rise with the stage" in dict(_issues(data))["rate.spread_by_cell"]
    data["rate"]["stage_tilt"] = "free"
    parse_definition(data)


def test_text_conditions_are_checked_against_the_field():
    data = _data("tech_innovation")
    data["subsidy"][0]["when"][0]["value"] = "ouhia"  # a typo never matches: refused
    assert "not among" in dict(_issues(data))["subsidy[0].when[0].value"]
    data["subsidy"][0]["when"][0] = {"field": "registry.district", "op": "ge", "value": "ouhai"}
    assert "not defined for text field" in dict(_issues(data))["subsidy[0].when[0].op"]
    data["subsidy"][0]["when"][0] = {"field": "registry.industry_code", "op": "in", "value": ["C39", "c4"]}
    assert "do not match the form" in dict(_issues(data))["subsidy[0].when[0].value"]
    data["subsidy"][0]["when"][0] = {"field": "registry.name", "op": "eq", "value": "x"}  # not a condition
    assert "unknown feature field" in dict(_issues(data))["subsidy[0].when[0].field"]


def test_coefficients_name_what_they_multiply():
    data = _data("new_villager")
    data["limit"]["coefficients"][0]["applies_to"] = ["segment_cap"]
    assert "no cap_by_segment" in dict(_issues(data))["limit.coefficients[0].applies_to[0]"]
    data["limit"]["coefficients"][0]["applies_to"] = ["revenue_shares"]
    assert "not grade_cap" in dict(_issues(data))["limit.coefficients[0].applies_to[0]"]


def test_collateral_options_are_consistent():
    data = _data("new_villager")
    data["collateral"] = "guaranteed"
    assert "not among the options" in dict(_issues(data))["collateral"]
    data = _data("per_mu")
    data["guarantee"] = {"fee_pct": 0.5}
    assert "each option declares its own fee" in dict(_issues(data))["guarantee"]


def test_an_old_single_subsidy_mapping_still_loads():
    data = _data("tech_innovation")
    data["subsidy"] = {"share_of_interest": 0.4, "note": {"zh": "贴息", "en": "subsidy"}}
    assert parse_definition(data).subsidy[0].share_of_interest == 0.4


def test_a_stored_definition_of_an_older_rule_set_still_rebuilds_for_replay():
    """The tax_credit of before per-stage grading (its startup/A cell unreachable) is refused for authoring
    but rebuilt with stored=True, and quotes as it did."""
    data = _data("tax_credit")
    del data["grading"]["cutoffs_by_segment"]
    data["rate"]["stage_tilt"] = "free"
    data["rate"]["ceiling"] = 16.0  # above today's policy maximum of 15.4%
    issues = dict(_issues(data))
    assert "grading.grades[0].min_index" in issues and "policy" in issues["rate.ceiling"]
    old = parse_definition(data, stored=True)
    assert old.grading.cutoffs_by_segment is None
    data["guarantee"]["fee_pct_by_grade"]["C"] = 250  # the schema's own bounds still hold
    with pytest.raises(DefinitionError):
        parse_definition(data, stored=True)


def test_the_fast_yaml_parser_reads_what_the_reference_parser_reads(tmp_path: Path):
    """Product files are parsed on libyaml (a run's start parses every one): the same data as the pure-Python
    SafeLoader for every YAML file of the repository, and the reference parser's own messages on broken ones."""
    from products import catalogue

    repo = DEFINITIONS_DIR.parents[1]
    files = sorted({*repo.glob("products/**/*.yaml"), *repo.glob("scoring/**/*.yaml"),
                    *repo.glob("training/**/*.yaml"), *repo.glob("api/**/*.yaml")})
    assert len(files) >= 8
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert catalogue._parse_yaml(text) == yaml.load(text, Loader=catalogue._StrictLoader), path  # noqa: S506
    assert catalogue._FastStrictLoader is not catalogue._StrictLoader
    for broken in ("code: [unclosed\n", "a: 1\na: 2\n", "a: b: c\n", "- x\ny: 1\n"):
        with pytest.raises(yaml.YAMLError) as fast:
            catalogue._parse_yaml(broken)
        with pytest.raises(yaml.YAMLError) as reference:
            yaml.load(broken, Loader=catalogue._StrictLoader)  # noqa: S506
        assert str(fast.value) == str(reference.value)
