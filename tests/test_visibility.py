""""Usable but not visible", scanned: on a small demo region, every role quotes through the real HTTP API and
reads every GET endpoint it may reach (quotes, replays, profile, products, batch status and file, whitelists
and their rows, files and changes); no response holds a raw score_only value of the demo firms in any usual
number format, and no platform response holds any raw government value. Plus the catalogue's rules: derived
indicators declare every input they read, and inherit the strictest visibility of them."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import time
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from api.cli.demo import ensure_champion
from api.keys import Role
from api.visibility import hint_text, redact_values, risk_factor
from features.derive import DERIVED_FEATURES, derive
from features.sources import GOVERNMENT_SOURCES, SOURCES, VISIBILITIES
from features.synthetic import generate_region, write_region
from products.fields import DERIVED_INPUTS, DERIVED_VISIBILITY, field_visibility
from products.visibility import Audience, shows
from scoring.risk_texts import NO, YES
from scoring.texts import Label
from tests.api_support import Service, running_service
from tests.conftest import settings_env

REGION = (400, 5)  # firms, seed: a small demo region of its own
FIRMS = 8  # demo firms quoted by every role
SIGNIFICANT = 4  # a printed number is searched for when it has this many significant digits (fewer: noise)
BANK_ROLES = (Role.loan_officer, Role.risk_analyst, Role.risk_approver, Role.admin)
REPLAYERS = {Role.loan_officer, Role.risk_analyst, Role.risk_approver, Role.admin}
RISK = {Role.risk_analyst, Role.risk_approver, Role.admin}


# ------------------------------------------------------------------ number formats


def _fixed(x: float, places: int, thousands: bool) -> str:
    d = Decimal(repr(x)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return f"{d:,f}" if thousands else f"{d:f}"


def _significant(text: str) -> int:
    """Digits from the first to the last non-zero one: 1,245,175 -> 7, 0.1113 -> 4, 95.30 -> 3, 5,000,000 -> 1."""
    return len(re.sub(r"[^0-9]", "", text).strip("0"))


def number_forms(x: float) -> set[str]:
    """The ways a number is usually printed: as JSON does, plain int, with thousands separators, rounded to
    0/1/2/4 decimals, in 万 / 万元 (1e4), as a percent when it is a fraction. Only forms with enough significant
    digits to identify the value are kept."""
    if not math.isfinite(x):
        return set()
    forms = {repr(x), str(int(x)) if x.is_integer() else repr(x)}
    scaled = [(x, ""), (x / 1e4, "万")]  # 万 (1e4) and % forms are searched for with their unit
    if abs(x) <= 1:
        scaled.append((x * 100, "%"))
    for value, suffix in scaled:
        for places in (0, 1, 2, 4):
            for thousands in (False, True):
                text = _fixed(value, places, thousands)
                forms.add(text + suffix)
                if "." in text:
                    forms.add(text.rstrip("0").rstrip(".") + suffix)
    return {f for f in forms if _significant(f) >= SIGNIFICANT and f not in ("-0", "0")}


def word_forms(value: Label) -> set[str]:
    """A short value (a grade, a class, yes/no) as a risk-factor text prints it: too short to look for alone."""
    return {f"为{value.zh}，", f"of {value.en} raises", f"of {value.en} lowers"}


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _pattern(forms: set[str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    # not inside a longer number, a credit code or a digest
    return re.compile(rf"(?<![0-9A-Za-z.,])(?:{alternatives})(?![0-9A-Za-z]|[.,][0-9])")


class Scanner:
    """Finds the printed forms of given raw values (and given strings) in response bodies."""

    def __init__(self, values: dict[str, list[object]]) -> None:
        self.patterns: list[tuple[str, re.Pattern[str]]] = []
        for field, items in values.items():
            forms: set[str] = set()
            for v in items:
                if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
                    continue
                if isinstance(v, bool | np.bool_):
                    forms |= word_forms(YES if v else NO)
                elif isinstance(v, int | float | np.integer | np.floating):
                    forms |= number_forms(float(v))
                elif isinstance(v, dt.date):
                    forms.add(v.isoformat())
                elif isinstance(v, str):  # names and dates as they are; grades and codes as a sentence prints them
                    forms |= {v} if len(v) >= 6 else word_forms(Label(v, v))
            pattern = _pattern(forms)
            if pattern is not None:
                self.patterns.append((field, pattern))

    def leaks(self, text: str) -> list[tuple[str, str]]:
        """(field, the match in its context) of each field a value of which is in `text`. Random identifiers
        (quote ids are uuid4) are blanked first: a 4-digit group of one ("-4821-") is no printed value."""
        text = UUID.sub("<uuid>", text)
        return [(field, text[max(m.start() - 60, 0):m.end() + 20]) for field, p in self.patterns
                if (m := p.search(text))]


def test_number_forms_cover_the_usual_prints() -> None:
    forms = number_forms(1245175.4321)
    assert {"1245175", "1,245,175", "1,245,175.43", "1245175.4321", "124.52万", "124.5175万"} <= forms
    assert {"-0.1113", "-11.13%", "-11.1300%"} <= number_forms(-0.1113)
    assert not number_forms(95.3) and not number_forms(5e6)  # 3 digits or a round number: too common
    scanner = Scanner({"tax.taxable_sales_cny_y0": [1245175.4321]})
    assert scanner.leaks('"of 1,245,175 raises"') and scanner.leaks("124.52万元") and scanner.leaks("[1245175.4321]")
    assert not scanner.leaks("11245175") and not scanner.leaks("1,245,1750")
    assert Scanner({"financials.interest_expense_cny": [4821.0]}).leaks("利息支出4821元")
    assert not Scanner({"financials.interest_expense_cny": [4821.0]}).leaks(
        '"quote_id":"716fa9c2-4821-4c1e-9d2b-0e5b8a1f3c77"')
    grades = Scanner({"tax.tax_credit_grade": ["A"], "tech.high_tech_enterprise": [True]})
    assert grades.leaks("「纳税信用等级」为A，降低违约概率") and grades.leaks('"High-tech enterprise" of yes lowers')
    assert not grades.leaks("评级A不在准入范围") and not grades.leaks("Grade A is not eligible")


# ------------------------------------------------------------------ the demo region, as every role reads it


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("visibility")
    write_region(generate_region(*REGION), directory / "region", "parquet")
    with settings_env(data_dir=str(directory / "var")), running_service(
            "sqlite", directory, prepare=lambda engine: ensure_champion(engine, directory)) as service:
        yield service


def _shows_a_value_the_platform_may_not(quote_body: dict) -> bool:
    """Whether the bank's risk-factor texts of a quote print a value of a field the platform may not read:
    firms the platform's view must be seen to filter."""
    return any(f["value"] is not None and not shows(Audience.platform, f["feature"])
               for q in quote_body["quotes"] for f in q["risk_factors"])


@pytest.fixture(scope="module")
def demo_firms(svc: Service) -> list[str]:
    """Firms with tax data and filed statements (the raw values at stake), two of them with risk factors that
    print a visible value, and two without tax data."""
    service = svc.client.app.state.quoting
    today = dt.date.today()
    population = service.state(today).population
    frame = population.frame
    rich = frame.index[frame["has_tax"].astype(bool) & frame["has_financials"].astype(bool)]
    poor = frame.index[~frame["has_tax"].astype(bool)]
    rng = np.random.default_rng(7)
    products = service.products_for(today, None)
    order = list(rng.permutation(list(rich)))
    printing = [c for c in order if _shows_a_value_the_platform_may_not(population.body(c, products, None))][:2]
    others = [c for c in order if c not in printing][:FIRMS - 4]
    return sorted([*printing, *others, *rng.choice(list(poor), 2, replace=False)])


def _raw_values(svc: Service, codes: list[str]) -> dict[str, list[object]]:
    """Every stored government value of the firms (every as-of), and every indicator the engine derives."""
    out: dict[str, list[object]] = {}
    frame = svc.client.app.state.quoting.state(dt.date.today()).population.frame.loc[codes]
    for column in frame.columns:
        out.setdefault(column, []).extend(frame[column].tolist())
    with svc.engine.connect() as conn:
        for name in GOVERNMENT_SOURCES:
            table = sa.Table(f"src_{name}", sa.MetaData(), autoload_with=conn)
            rows = conn.execute(sa.select(table).where(table.c.credit_code.in_(codes))).mappings().all()
            for row in rows:
                for f in SOURCES[name].field_names:
                    out.setdefault(f"{name}.{f}", []).append(row[f])
    return out


def _get(svc: Service, role: Role, url: str, **params: object) -> str:
    response = svc.client.get(url, headers=svc.headers(role), params=params)
    assert response.status_code == 200, (role, url, response.status_code, response.text[:300])
    return response.text


def _batch(svc: Service) -> tuple[str, str]:
    started = svc.client.post("/v1/batch/precredit", json={"format": "csv", "partitions": 1, "reasons": 5},
                              headers=svc.headers(Role.risk_analyst))
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    deadline = time.monotonic() + 300
    while (status := svc.client.get(f"/v1/batch/precredit/{job_id}", headers=svc.headers(Role.admin))
           .json()["status"]) not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status == "succeeded"
    proposed = svc.client.post("/v1/whitelists", json={"job_id": job_id}, headers=svc.headers(Role.risk_analyst))
    assert proposed.status_code == 201, proposed.text
    whitelist_id = proposed.json()["whitelist_id"]
    published = svc.client.post(f"/v1/whitelists/{whitelist_id}/publish", json={},
                                headers=svc.headers(Role.risk_approver))
    assert published.status_code == 200, published.text
    return job_id, str(whitelist_id)


def _rows_of(csv_text: str, codes: list[str]) -> str:
    """The header and the rows of `codes` of a whole-region CSV file. Its other firms' values are not in the
    scan's raw values, so their rows could only match by coincidence: thousands of PDs printed with 4
    significant digits ("违约概率19.49%") cover much of that space and once matched a sampled firm's growth rate."""
    rows = list(csv.reader(io.StringIO(csv_text)))
    column = rows[0].index("credit_code")
    kept = [rows[0], *(row for row in rows[1:] if row[column] in codes)]
    assert len(kept) == len(codes) + 1, "every sampled firm has its row in the batch file"
    return "\n".join(",".join(row) for row in kept)


@pytest.fixture(scope="module")
def responses(svc: Service, demo_firms: list[str]) -> dict[Role, list[tuple[str, str]]]:
    """(what, body) of every response each role received: quotes, stored quotes, replays, profiles, probes,
    models, the audit check, products, the batch job and its file, whitelists with their rows, files and
    changes, the page (every GET of the role matrix of tests/test_api.py)."""
    codes = demo_firms
    job_id, whitelist_id = _batch(svc)
    out: dict[Role, list[tuple[str, str]]] = {role: [] for role in Role}
    for role in Role:
        seen = out[role]
        for code in codes:
            posted = svc.client.post("/v1/quotes", json={"credit_code": code, "consent_ref": "AUTH-VIS",
                                                         "requested_amount_cny": 1e6}, headers=svc.headers(role))
            assert posted.status_code == 201, posted.text
            seen.append((f"POST quote {code}", posted.text))
            quote_id = posted.json()["quote_id"]
            seen.append((f"GET quote {code}", _get(svc, role, f"/v1/quotes/{quote_id}")))
            if role in REPLAYERS:
                for against in ("stored", "current"):
                    seen.append((f"replay {against} {code}",
                                 _get(svc, role, f"/v1/quotes/{quote_id}/replay", against=against)))
            if role is Role.loan_officer:
                seen.append((f"profile {code}", _get(svc, role, f"/v1/enterprises/{code}/profile")))
        for probe in ("/healthz", "/readyz"):
            seen.append((probe, _get(svc, role, probe)))
        # /metrics: its sample values are request counts and latency buckets (a count of 5042 once matched a
        # firm's income tax); what could carry a firm's value is a metric's name or labels, which are scanned
        seen.append(("/metrics", re.sub(r"(?m)^([^#\s][^ ]*) \S+$", r"\1", _get(svc, role, "/metrics"))))
        if role in RISK:
            seen.append(("models", _get(svc, role, "/v1/models")))
        if role in (Role.risk_approver, Role.admin):
            seen.append(("audit", _get(svc, role, "/v1/audit/verify")))
        seen.append(("products", _get(svc, role, "/v1/products")))
        seen.append(("product tax_credit", _get(svc, role, "/v1/products/tax_credit")))
        if role in RISK:
            seen.append(("batch job", _get(svc, role, f"/v1/batch/precredit/{job_id}")))
            seen.append(("batch file", _rows_of(_get(svc, role, f"/v1/batch/precredit/{job_id}/result"), codes)))
            seen.append(("whitelists", _get(svc, role, "/v1/whitelists")))
            seen.append(("whitelist", _get(svc, role, f"/v1/whitelists/{whitelist_id}")))
        if role in RISK | {Role.platform}:
            current = svc.client.get("/v1/whitelists/products", headers=svc.headers(role)).json()
            seen.append(("whitelist products", _get(svc, role, "/v1/whitelists/products")))
            for product in [w["product"] for w in current["products"]]:
                base = f"/v1/whitelists/products/{product}"
                for suffix in ("", "/rows", "/file", "/changes"):
                    seen.append((f"whitelist {product}{suffix}", _get(svc, role, base + suffix)))
    out[Role.loan_officer].append(("page", _get(svc, Role.loan_officer, "/")))
    return out


@pytest.fixture(scope="module")
def raw(svc: Service, demo_firms: list[str]) -> dict[str, list[object]]:
    return _raw_values(svc, demo_firms)


def _scan(scanner: Scanner, bodies: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    return [(what, field, shown) for what, body in bodies for field, shown in scanner.leaks(body)]


@pytest.mark.parametrize("role", BANK_ROLES, ids=[r.value for r in BANK_ROLES])
def test_no_score_only_value_reaches_the_bank_roles(responses, raw, role: Role) -> None:
    score_only = {f: v for f, v in raw.items() if not shows(Audience.bank, f)}
    assert {"tax.taxable_sales_cny_y0", "tax.tax_credit_score", "financials.other_wc_sources_cny", "sales_margin",
            "wc_gap_cny", "vat_paid_3y_cny"} <= set(score_only)
    leaks = _scan(Scanner(score_only), responses[role])
    assert not leaks, leaks[:10]


def test_no_raw_government_value_reaches_the_platform(responses, raw) -> None:
    # every government value but an evaluation's published result (the "two healthy" points the two_healthy
    # index equals, the official per-mu class): registry, tax, statements, meters, courts, derived indicators
    everything = {f: v for f, v in raw.items() if not shows(Audience.platform, f)}
    assert {"registry.name", "registry.registered_capital_cny", "locality.years_in_locality", "age_years",
            "credit_bureau.outstanding_loans_cny", "tax.tax_credit_score"} <= set(everything)
    leaks = _scan(Scanner(everything), responses[Role.platform])
    assert not leaks, leaks[:10]


def test_the_scanned_responses_are_the_ones_that_matter(responses, raw) -> None:
    """The scan would see a leak: the officer reads visible values, and withheld ones are worded without."""
    officer = "\n".join(body for _, body in responses[Role.loan_officer])
    visible = {f: v for f, v in raw.items() if f in ("registry.registered_capital_cny", "registry.name")}
    assert Scanner(visible).leaks(officer)  # visible values are shown (so the scanner does find values)
    assert "RISK_FACTOR_WITHHELD_" in officer and '"withheld":true' in officer.replace(" ", "")
    assert "_WITHHELD" in officer and "可用不可见" in officer
    # the officer's risk-factor texts print visible values the platform may not read: its view must drop them
    texts = [f[lang] for what, body in responses[Role.loan_officer] if what.startswith("POST quote")
             for q in json.loads(body)["quotes"] for f in q["risk_factors"] for lang in ("zh", "en")]
    not_for_platform = {f: v for f, v in raw.items() if not shows(Audience.platform, f)}
    assert Scanner(not_for_platform).leaks("\n".join(texts))
    kinds = {what.split(" ")[0] for what, _ in responses[Role.risk_analyst]}
    assert {"POST", "GET", "replay", "batch", "whitelist", "whitelists"} <= kinds
    assert any("risk_factor_1_zh" in body for what, body in responses[Role.risk_analyst] if what == "batch file")


def test_profile_names_the_withheld_fields(svc: Service, demo_firms: list[str]) -> None:
    code = demo_firms[0]
    profile = svc.client.get(f"/v1/enterprises/{code}/profile", headers=svc.headers(Role.loan_officer)).json()
    tax = profile["sources"]["tax"]
    assert "taxable_sales_cny_y0" in tax["withheld"] and "taxable_sales_cny_y0" not in tax["fields"]
    assert tax["fields"]["tax_credit_grade"] in ("A", "B", "M", "C", "D")
    assert profile["sources"]["registry"]["withheld"] == []


# ------------------------------------------------------------------ the catalogue's rules


def _sample_frame() -> pd.DataFrame:
    region = generate_region(60, 3)
    frame = None
    for name in GOVERNMENT_SOURCES:
        part = region[name].drop_duplicates("credit_code", keep="last").set_index("credit_code")
        part = part[[c for c in SOURCES[name].field_names if c in part.columns]].add_prefix(f"{name}.")
        frame = part if frame is None else frame.join(part, how="outer")
    return frame


def _inputs(name: str) -> set[str]:
    out = set()
    for i in DERIVED_INPUTS[name]:
        out |= {i} | (_inputs(i) if i in DERIVED_INPUTS else set())
    return out


def test_derived_indicators_declare_every_input_they_read() -> None:
    """Blank one source column at a time: each derived column it changes must declare it (directly or through
    another derived indicator), so nothing inherits a laxer visibility than its inputs."""
    frame = _sample_frame()
    as_of = dt.date(2026, 1, 1)
    base = derive(frame, as_of)[list(DERIVED_FEATURES)]
    for column in frame.columns:
        blanked = frame.copy()
        blanked[column] = np.nan if blanked[column].dtype != object else None
        after = derive(blanked, as_of)[list(DERIVED_FEATURES)]
        for name in DERIVED_FEATURES:
            if not base[name].astype(str).equals(after[name].astype(str)):
                assert column in _inputs(name), f"{name} reads {column} but does not declare it"


def test_derived_indicators_inherit_the_strictest_visibility() -> None:
    vis = field_visibility()
    for name in DERIVED_FEATURES:
        if name in DERIVED_VISIBILITY:
            continue
        inputs = [VISIBILITIES.index(vis[i]) for i in DERIVED_INPUTS[name]]
        assert vis[name] == VISIBILITIES[max(inputs)], name
    assert vis["sales_growth"] == vis["wc_gap_cny"] == vis["tax_per_mu_cny"] == "score_only"
    assert vis["tax_credit_grade_rank"] == vis["age_years"] == "visible" and vis["per_mu_class_rank"] == "result"


def test_tax_items_are_score_only_and_registry_facts_visible() -> None:
    tax = {f.name: f.visibility for f in SOURCES["tax"].fields}
    assert tax["tax_credit_grade"] == "visible"
    assert all(v == "score_only" for n, v in tax.items() if n.endswith("_cny") or n == "tax_credit_score")
    assert all(f.visibility == "score_only" for f in SOURCES["financials"].fields)
    assert all(f.visibility == "visible" for f in SOURCES["registry"].fields)
    assert not any(shows(Audience.platform, f"registry.{f.name}") for f in SOURCES["registry"].fields)
    assert not shows(Audience.bank, "no_such_field")  # unknown names fail closed
    assert shows(Audience.platform, "two_healthy.total_points") and shows(Audience.platform, "per_mu_class_rank")
    assert not shows(Audience.log, "two_healthy.total_points")


# ------------------------------------------------------------------ texts worded without the value


def test_risk_factor_texts_drop_values_the_reader_may_not_see() -> None:
    factor = {"feature": "tax.tax_credit_score", "value": 95.3, "contribution": -0.2, "code": "", "zh": "", "en": ""}
    bank = risk_factor(factor, Audience.bank)
    assert bank["value"] is None and bank["withheld"] and bank["code"] == "RISK_FACTOR_WITHHELD_LOWERS"
    assert "95" not in bank["zh"] + bank["en"] and "纳税信用评分" in bank["zh"] and "Tax-credit score" in bank["en"]
    shown = risk_factor({**factor, "feature": "registry.admin_penalties_3y", "value": 7.0}, Audience.bank)
    assert shown["value"] == 7.0 and "of 7 " in shown["en"] and shown["code"] == "RISK_FACTOR_LOWERS"
    platform = risk_factor(shown, Audience.platform)
    assert platform["code"] == "RISK_FACTOR_WITHHELD_LOWERS" and "7" not in platform["en"]
    missing = risk_factor({**factor, "value": None}, Audience.bank)
    assert missing["code"] == "RISK_FACTOR_MISSING_LOWERS"
    assert risk_factor(bank, Audience.platform)["code"] == "RISK_FACTOR_WITHHELD_LOWERS"  # withheld stays withheld


def test_hints_are_worded_without_a_withheld_value() -> None:
    change = {"indicator": "sales", "name": {"zh": "应税销售收入", "en": "Taxable sales"},
              "field": "tax.taxable_sales_cny_y0", "from": 3245370.37, "to": 5000000, "direction": "at_least",
              "points_gain": 6.0}
    text = hint_text(change, Audience.bank, missing=False)
    assert text["code"] == "HINT_AT_LEAST_WITHHELD" and "5,000,000" in text["en"] and "3,245" not in text["en"]
    assert "5,000,000" in text["zh"] and "可用不可见" in text["zh"]
    visible = hint_text({**change, "field": "registry.registered_capital_cny"}, Audience.bank, missing=False)
    assert visible["code"] == "HINT_AT_LEAST" and "3,245,370.37" in visible["en"]
    assert hint_text({**change, "from": None}, Audience.bank, missing=True)["code"] == "HINT_SUPPLY_DATA"


def test_log_lines_lose_values_of_catalogued_fields() -> None:
    line = 'row 7: taxable_sales_cny_y0=1,245,175.5, "financials.net_profit_cny": -19155246 limit_cny=500000'
    redacted = redact_values(line)
    assert "1,245,175" not in redacted and "19155246" not in redacted and "limit_cny=500000" in redacted
    assert redacted.count("[withheld]") == 2


def test_the_log_filter_is_on_the_service_logs() -> None:
    from api.http.logs import redact

    assert "98765.4" not in redact("vat_paid_cny_y0: 98765.4")


