"""The quote body (the one used by the API, the CLI and replay) carries the service deadlines as dates
and every collateral option's terms."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from api.quoting.population import Population
from api.quoting.versions import build_versions
from products.catalogue import load_catalogue, reference_rates
from scoring.sample import random_features

AS_OF = dt.date(2025, 9, 30)


def test_quote_body_has_deadline_dates_and_collateral_options():
    frame = random_features(2000, seed=4, as_of=AS_OF)
    frame["registry.district"] = pd.array(["ouhai"] * len(frame), dtype="str")
    versions = build_versions(load_catalogue(), reference_rates(AS_OF), None, frame, AS_OF)
    population = Population(frame, versions)
    seen = set()
    for code in frame.index[:400]:
        body = population.body(code, ["per_mu", "new_villager", "tech_innovation"], None)
        for q in body["quotes"]:
            if not q["eligible"]:
                assert q["service_deadlines"] is None
                continue
            seen.add(q["product"])
            if q["product"] == "per_mu":  # 2 working days after 2025-09-30: the National Day holiday
                assert q["service_deadlines"]["contact_by"] == "2025-10-10"
                assert q["guarantee_fee"]["pct"] == 0.0
                assert {o["code"] for o in q["collateral_options"]} == {"unsecured", "guaranteed"}
            if q["product"] == "new_villager":
                assert q["service_deadlines"]["disbursement_by"] == "2025-10-03"
                secured = next(o for o in q["collateral_options"] if o["code"] == "secured")
                assert secured["rate"] < q["rate"]
            if q["product"] == "tech_innovation":
                assert q["subsidy"]["pct"] > 0  # every firm of this frame is in Ouhai
    assert seen == {"per_mu", "new_villager", "tech_innovation"}
