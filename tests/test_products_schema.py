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
