"""The synthetic region: determinism, catalogue conformance, coverage, consistency, outcomes, files."""

from __future__ import annotations

import datetime as dt
import json
import re

import numpy as np
import pandas as pd
import pytest

from features import uscc
from features.derive import production_state
from features.sources import ELECTRICITY_MONTHS, SOURCES
from features.synthetic import generate_region, latent_quality, write_region

FIRMS = 4000
SEED = 20251231
END = dt.date(2025, 12, 31)
SNAPSHOT_DATES = [pd.Timestamp("2023-12-31"), pd.Timestamp("2024-12-31"), pd.Timestamp("2025-12-31")]


@pytest.fixture(scope="module")
def region() -> dict[str, pd.DataFrame]:
    return generate_region(FIRMS, SEED)


@pytest.fixture(scope="module")
def z() -> pd.Series:
    return latent_quality(FIRMS, SEED)


def latest(frame: pd.DataFrame, when: pd.Timestamp = SNAPSHOT_DATES[-1]) -> pd.DataFrame:
    """Rows of one snapshot, indexed by credit code, without the as_of column."""
    return frame[frame["as_of"] == when].drop(columns="as_of").set_index("credit_code")


# ------------------------------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_frames(region) -> None:
    again = generate_region(FIRMS, SEED)
    assert list(again) == list(region)
    for name, frame in region.items():
        pd.testing.assert_frame_equal(again[name], frame, check_exact=True, obj=name)


def test_different_seed_gives_different_frames(region) -> None:
    other = generate_region(FIRMS, SEED + 1)
    assert not other["registry"]["credit_code"].equals(region["registry"]["credit_code"]) or not other[
        "registry"]["name"].equals(region["registry"]["name"])
    a, b = latest(region["tax"]), latest(other["tax"])
    common = a.index.intersection(b.index)
    assert not a.loc[common, "taxable_sales_cny_y0"].equals(b.loc[common, "taxable_sales_cny_y0"])


# ------------------------------------------------------------------------------------------ shape


def test_one_frame_per_source_with_catalogue_columns(region) -> None:
    assert list(region) == list(SOURCES)
    for name, spec in SOURCES.items():
        assert list(region[name].columns) == ["credit_code", "as_of", *spec.field_names], name


def test_three_yearly_snapshots(region) -> None:
    for name, frame in region.items():
        dates = sorted(frame["as_of"].unique())
        expected = SNAPSHOT_DATES[:2] if name == "loan_outcomes" else SNAPSHOT_DATES
        assert [pd.Timestamp(d) for d in dates] == expected, name
    # Firms appear once established; nearly all exist at all three dates.
    counts = region["registry"].groupby("as_of").size()
    assert counts.is_monotonic_increasing
    assert counts.iloc[-1] == FIRMS
    assert counts.iloc[0] > 0.8 * FIRMS


def test_credit_codes_valid_unique_and_keys_unique(region) -> None:
    codes = latest(region["registry"]).index
    assert codes.is_unique
    assert all(uscc.is_valid(code) for code in codes)
    division_codes = set(uscc.WENZHOU_DIVISIONS)
    assert {code[2:8] for code in codes} <= division_codes
    for name, frame in region.items():
        assert set(frame["credit_code"]) <= set(codes), name
        # The store keys every row by (credit_code, as_of): no duplicates anywhere, loans included.
        assert not frame.duplicated(["credit_code", "as_of"]).any(), name
    # Individual businesses carry entity type 2 in the code, enterprises 1.
    reg = latest(region["registry"])
    individual = reg["legal_form"] == "individual_business"
    assert (reg.index[individual].str[1] == "2").all()
    assert (reg.index[~individual].str[1] == "1").all()


# ------------------------------------------------------------------------------------------ catalogue


def test_values_within_catalogue_ranges_and_enumerations(region) -> None:
    for name, spec in SOURCES.items():
        frame = region[name]
        assert pd.api.types.is_datetime64_any_dtype(frame["as_of"]), name
        assert frame["credit_code"].notna().all()
        for field in spec.fields:
            column = frame[field.name]
            where = f"{name}.{field.name}"
            if field.required:
                assert column.notna().all(), f"{where} has missing values"
            present = column.dropna()
            if field.kind == "bool":
                assert pd.api.types.is_bool_dtype(column), where
            elif field.kind == "int":
                assert pd.api.types.is_integer_dtype(column), where
            elif field.kind == "float":
                assert pd.api.types.is_float_dtype(column), where
                assert np.isfinite(present).all(), where
            elif field.kind == "date":
                assert pd.api.types.is_datetime64_any_dtype(column), where
            if field.ge is not None:
                assert (present >= field.ge).all(), f"{where} below {field.ge}: {present.min()}"
            if field.le is not None:
                assert (present <= field.le).all(), f"{where} above {field.le}: {present.max()}"
            if field.choices:
                assert present.isin(field.choices).all(), f"{where}: {set(present) - set(field.choices)}"
            if field.pattern:
                assert present.str.fullmatch(field.pattern).all(), where
            if field.kind in ("str", "enum"):
                assert (present.str.len() > 0).all(), where


def test_only_per_mu_class_is_ever_missing(region) -> None:
    missing = {
        f"{name}.{column}"
        for name, frame in region.items()
        for column in frame.columns
        if frame[column].isna().any()
    }
    assert missing == {"per_mu.per_mu_class"}


# ------------------------------------------------------------------------------------------ coverage


@pytest.mark.parametrize(
    ("source", "low", "high"),
    [
        ("registry", 1.0, 1.0),
        ("tax", 0.97, 1.0),
        ("per_mu", 0.28, 0.42),
        ("tech", 0.22, 0.28),
        ("social_security", 0.85, 0.95),
        ("electricity", 0.75, 0.85),
        ("judicial", 1.0, 1.0),
        ("two_healthy", 0.36, 0.44),
        ("locality", 0.05, 0.08),
        ("financials", 0.65, 0.75),
        ("credit_bureau", 0.56, 0.64),
    ],
)
def test_coverage_is_partial_as_specified(region, source, low, high) -> None:
    share = len(latest(region[source])) / FIRMS
    assert low <= share <= high, f"{source} covers {share:.3f}"


def test_per_mu_only_for_industrial_firms_mostly_evaluated(region) -> None:
    registry = latest(region["registry"])
    per_mu = latest(region["per_mu"])
    assert registry.loc[per_mu.index, "industry_code"].str.startswith("C").all()
    assert per_mu["per_mu_class"].notna().mean() > 0.8
    assert per_mu["per_mu_class"].value_counts(normalize=True)["A+"] < 0.1
    assert (per_mu["above_scale"] == (per_mu["revenue_cny"] >= 20e6)).all()
    assert 0.05 < per_mu["above_scale"].mean() < 0.5


def test_locality_rows_are_chamber_members(region) -> None:
    assert region["locality"]["chamber_member"].all()


# ------------------------------------------------------------------------------------------ realism


def test_mix_of_industries_districts_forms_and_sizes(region) -> None:
    reg = latest(region["registry"])
    sections = reg["industry_code"].str[0].value_counts(normalize=True)
    assert 0.40 < sections["C"] < 0.55  # Wenzhou is a manufacturing region
    top_divisions = reg["industry_code"].value_counts().index[:3]
    assert "C38" in top_divisions and "F51" in top_divisions
    assert reg["district"].nunique() == 12
    assert set(reg["district"]) == set(uscc.WENZHOU_DIVISIONS.values())
    forms = reg["legal_form"].value_counts(normalize=True)
    assert forms.idxmax() == "limited_company" and 0.08 < forms["individual_business"] < 0.2
    sizes = reg["size_class"].value_counts(normalize=True)
    assert sizes["micro"] > 0.5 and sizes["small"] > sizes.get("medium", 0) >= sizes.get("large", 0)
    assert (reg["established_date"] <= SNAPSHOT_DATES[-1]).all()


def test_tax_grades_follow_the_national_mix_and_quality(region, z) -> None:
    tax = latest(region["tax"])
    shares = tax["tax_credit_grade"].value_counts(normalize=True)
    for grade, target in {"A": 0.20, "B": 0.45, "M": 0.20, "C": 0.10, "D": 0.05}.items():
        assert abs(shares[grade] - target) < 0.03, (grade, shares[grade])
    mean_z = z.reindex(tax.index).groupby(tax["tax_credit_grade"]).mean()
    assert mean_z["A"] > mean_z["B"] > mean_z["C"] > mean_z["D"]
    bands = tax.groupby("tax_credit_grade")["tax_credit_score"].agg(["min", "max"])
    assert bands.loc["A", "min"] >= 90 and bands.loc["D", "max"] <= 40


@pytest.mark.parametrize(("source", "flag"), [
    ("judicial", "dishonest_debtor"), ("registry", "abnormal_operation"), ("tax", "tax_arrears"),
])
def test_adverse_flags_are_rare_and_among_weak_firms(region, z, source, flag) -> None:
    frame = latest(region[source])
    flagged = frame[flag]
    assert 0.01 <= flagged.mean() <= 0.06
    quality = z.reindex(frame.index)
    assert quality[flagged].mean() < quality[~flagged].mean() - 0.7


def test_production_state_mix_and_weak_firms_falter(region, z) -> None:
    electricity = latest(region["electricity"])
    states, _ = production_state(electricity)
    shares = states.value_counts(normalize=True)
    assert shares["stable"] > 0.5
    assert 0.05 < shares["increased"] < 0.3
    assert 0.03 < shares["reduced"] < 0.15
    assert 0.005 < shares["stopped"] < 0.08
    quintile = pd.qcut(z.reindex(electricity.index), 5, labels=False)
    faltering = states.isin(["reduced", "stopped"])
    by_quintile = faltering.groupby(quintile).mean()
    assert by_quintile[0] > 2 * by_quintile[4]
    # Stopped means near-zero recent months.
    stopped = electricity.loc[states == "stopped", ["kwh_m01", "kwh_m02", "kwh_m03"]]
    recent_base = electricity.loc[states == "stopped", ["kwh_m13", "kwh_m14", "kwh_m15"]].mean(axis=1)
    assert (stopped.mean(axis=1) <= 0.05 * recent_base + 1e-9).all()


# ------------------------------------------------------------------------------------------ consistency


def test_year_and_month_fields_line_up_across_snapshots(region) -> None:
    now, before = SNAPSHOT_DATES[-1], SNAPSHOT_DATES[-2]
    tax_now, tax_before = latest(region["tax"], now), latest(region["tax"], before)
    common = tax_now.index.intersection(tax_before.index)
    assert len(common) > 0.8 * FIRMS
    for metric in ("taxable_sales_cny", "vat_paid_cny"):
        np.testing.assert_array_equal(tax_now.loc[common, f"{metric}_y1"], tax_before.loc[common, f"{metric}_y0"])
        np.testing.assert_array_equal(tax_now.loc[common, f"{metric}_y2"], tax_before.loc[common, f"{metric}_y1"])
    el_now, el_before = latest(region["electricity"], now), latest(region["electricity"], before)
    common = el_now.index.intersection(el_before.index)
    for m in range(13, ELECTRICITY_MONTHS + 1):
        np.testing.assert_array_equal(el_now.loc[common, f"kwh_m{m:02d}"], el_before.loc[common, f"kwh_m{m - 12:02d}"])
    # Figures evolve: most firms' sales change from year to year, but plausibly.
    old = tax_now[(tax_now["taxable_sales_cny_y1"] > 0) & (tax_now["taxable_sales_cny_y0"] > 0)]
    growth = old["taxable_sales_cny_y0"] / old["taxable_sales_cny_y1"]
    assert (growth != 1).mean() > 0.95
    assert 0.95 < growth.median() < 1.15
    # Patent counts never fall over time.
    tech_now, tech_before = latest(region["tech"], now), latest(region["tech"], before)
    common = tech_now.index.intersection(tech_before.index)
    assert (tech_now.loc[common, "invention_patents"] >= tech_before.loc[common, "invention_patents"]).all()


def test_two_healthy_points_add_up_and_grade_follows(region) -> None:
    th = region["two_healthy"]
    assert (th["total_points"] == th["enterprise_points"] + th["entrepreneur_points"]).all()
    expected = np.select(
        [th["total_points"] >= 800, th["total_points"] >= 650, th["total_points"] >= 500], ["A", "B", "C"], "D")
    assert (th["grade"].to_numpy() == expected).all()
    assert th.loc[th["whitelisted"], "grade"].isin(["A", "B"]).all()
    assert set(th["grade"]) == {"A", "B", "C", "D"}


def test_financials_and_credit_bureau_are_internally_consistent(region) -> None:
    fin = region["financials"]
    assert (fin["current_assets_cny"] <= fin["total_assets_cny"]).all()
    assert (fin["current_liabilities_cny"] <= fin["total_liabilities_cny"]).all()
    assert (fin["receivables_cny"] + fin["inventory_cny"] <= fin["current_assets_cny"] + 2).all()
    assert (fin["payables_cny"] <= fin["current_liabilities_cny"] + 1).all()
    assert (fin["cost_of_sales_cny"] <= fin["revenue_cny"]).all()
    assert (fin["own_funds_cny"] == fin["current_assets_cny"] - fin["current_liabilities_cny"]).all()
    debt_ratio = fin["total_liabilities_cny"] / fin["total_assets_cny"]
    assert 0.4 < debt_ratio.median() < 0.75
    cb = region["credit_bureau"]
    assert (cb["working_capital_loans_cny"] <= cb["outstanding_loans_cny"]).all()
    assert ((cb["outstanding_loans_cny"] > 0) == (cb["lending_banks"] > 0)).all()
    assert cb["overdue_count_24m"].eq(0).mean() > 0.8
    # Bank loans on the statements: liabilities at least the loans, interest when there are loans.
    joined = latest(fin).join(latest(cb), how="inner")
    assert (joined["total_liabilities_cny"] >= joined["outstanding_loans_cny"]).all()
    assert (joined.loc[joined["outstanding_loans_cny"] > 0, "interest_expense_cny"] > 0).all()


def test_tax_and_statements_and_staff_relate(region) -> None:
    tax, fin = latest(region["tax"]), latest(region["financials"])
    joined = tax.join(fin, how="inner")
    joined = joined[joined["revenue_cny"] > 1e4]
    ratio = joined["taxable_sales_cny_y0"] / joined["revenue_cny"]
    assert ratio.between(0.69, 1.0001).all()
    assert ratio.median() > 0.9
    per_mu, ss, tech = latest(region["per_mu"]), latest(region["social_security"]), latest(region["tech"])
    insured = ss[[f"insured_employees_m{m:02d}" for m in range(1, 13)]].mean(axis=1)
    both = per_mu.join(insured.rename("insured"), how="inner")
    assert (both["insured"] <= both["employees"] + 1).all()
    assert both["insured"].corr(both["employees"]) > 0.9
    with_tech = tech.join(per_mu[["employees", "rd_expense_cny", "revenue_cny"]], how="inner")
    assert (with_tech["rd_staff"] <= with_tech["employees"]).all()
    rd_ratio = with_tech["rd_expense_cny"] / with_tech["revenue_cny"]
    hte = with_tech["high_tech_enterprise"]
    assert rd_ratio[hte].median() > 0.03 > rd_ratio[~hte & ~with_tech["tech_sme"]].median()
    # Value added and tax scale with land: per-mu figures better for better classes.
    per_mu_score = (per_mu["tax_paid_cny"] / per_mu["land_area_mu"]).groupby(per_mu["per_mu_class"]).median()
    assert per_mu_score["A+"] > per_mu_score["A"] > per_mu_score["B"] > per_mu_score["D"]


# ------------------------------------------------------------------------------------------ outcomes


def test_loans_and_default_rates(region, z) -> None:
    loans = region["loan_outcomes"]
    assert loans["loan_id"].is_unique
    registry = region["registry"]
    for when in SNAPSHOT_DATES[:2]:
        share = (loans["as_of"] == when).sum() / (registry["as_of"] == when).sum()
        assert 0.30 <= share <= 0.50, (when, share)
    assert (loans["amount_cny"] > 0).all()
    rate = loans["default_12m"].mean()
    assert 0.02 <= rate <= 0.05, rate
    quintile = pd.qcut(z.reindex(loans["credit_code"]).to_numpy(), 5, labels=False)
    by_quintile = loans["default_12m"].groupby(quintile).mean()
    assert by_quintile[0] > 3 * by_quintile[4]
    assert by_quintile[0] > rate > by_quintile[4]


def test_defaults_follow_observable_signals(region) -> None:
    loans = region["loan_outcomes"].set_index(["credit_code", "as_of"])
    cb = region["credit_bureau"].set_index(["credit_code", "as_of"])
    tax = region["tax"].set_index(["credit_code", "as_of"])
    joined = loans.join(cb, how="inner").join(tax, how="inner")
    overdue = joined["overdue_count_24m"] > 0
    assert joined.loc[overdue, "default_12m"].mean() > 2 * joined.loc[~overdue, "default_12m"].mean()
    weak_grade = joined["tax_credit_grade"].isin(["C", "D"])
    assert joined.loc[weak_grade, "default_12m"].mean() > 2 * joined.loc[~weak_grade, "default_12m"].mean()


# ------------------------------------------------------------------------------------------ files


@pytest.fixture(scope="module")
def small_region() -> dict[str, pd.DataFrame]:
    return generate_region(300, 5, END)


def test_write_parquet_round_trips_with_manifest(small_region, tmp_path) -> None:
    paths = write_region(small_region, tmp_path, "parquet")
    assert {name: p.name for name, p in paths.items()} == {name: f"{name}.parquet" for name in SOURCES}
    for name, path in paths.items():
        back = pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, small_region[name], check_exact=True, obj=name)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["firms"] == 300 and manifest["seed"] == 5
    assert manifest["snapshots"] == ["2023-12-31", "2024-12-31", "2025-12-31"]
    assert manifest["rows"] == {name: len(frame) for name, frame in small_region.items()}


def test_write_csv_uses_true_false_and_iso_dates(small_region, tmp_path) -> None:
    paths = write_region(small_region, tmp_path, "csv")
    assert paths["registry"].name == "registry.csv"
    text = pd.read_csv(paths["registry"], dtype=str, keep_default_na=False)
    assert set(text["abnormal_operation"]) <= {"true", "false"}
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    assert text["as_of"].map(lambda v: bool(iso.match(v))).all()
    assert text["established_date"].map(lambda v: bool(iso.match(v))).all()
    per_mu = pd.read_csv(paths["per_mu"], dtype=str, keep_default_na=False)
    assert set(per_mu["above_scale"]) <= {"true", "false"}
    assert len(per_mu) == len(small_region["per_mu"])
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format"] == "csv" and manifest["files"]["tax"] == "tax.csv"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_written_files_pass_ingestion_validation(small_region, tmp_path, fmt) -> None:
    validation = pytest.importorskip("features.validation")
    ingest = pytest.importorskip("features.ingest")
    paths = write_region(small_region, tmp_path, fmt)
    for name, path in paths.items():
        validation.check_columns(name, ingest.file_columns(path))
        for chunk in ingest.read_chunks(path, 100_000):
            checked = validation.validate_chunk(name, chunk, first_row=1)
            assert checked.bad.empty, (name, checked.bad.head(3).to_dict("records"))
            assert len(checked.good) == len(chunk)


def test_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="firms"):
        generate_region(0, 1)
    with pytest.raises(ValueError, match="fmt"):
        write_region(generate_region(5, 1), tmp_path, "xlsx")
