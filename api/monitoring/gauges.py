"""Prometheus gauges of the latest monitoring report. In multiprocess mode (`indexloan serve --workers N`)
each gauge keeps the most recent value any worker set (`multiprocess_mode="mostrecent"`), so /metrics shows one
figure per series however many workers there are."""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

from api.http.metrics import registry

PSI = Gauge("indexloan_monitoring_psi", "PSI of a product index, the PD or a model input (current vs reference)",
            ["kind", "name"], registry=registry, multiprocess_mode="mostrecent")
FEED_COVERAGE = Gauge("indexloan_feed_coverage_ratio", "Share of enterprises a data source covers", ["source"],
                      registry=registry, multiprocess_mode="mostrecent")
FEED_AGE = Gauge("indexloan_feed_age_days", "Age of a data source's latest as-of date (days; -1: no data)",
                 ["source"], registry=registry, multiprocess_mode="mostrecent")
FEED_MISSING = Gauge("indexloan_feed_missing_max_ratio", "Largest share of covered enterprises with a field empty",
                     ["source"], registry=registry, multiprocess_mode="mostrecent")
OVERRIDE_SHARE = Gauge("indexloan_override_share_ratio", "Share of an officer's quotes overridden, per product",
                       ["officer", "product"], registry=registry, multiprocess_mode="mostrecent")
ALERTS = Gauge("indexloan_monitoring_alerts", "Alerts and warnings in the latest monitoring report", ["level"],
               registry=registry, multiprocess_mode="mostrecent")


def publish(report: dict[str, Any]) -> None:
    """Set every gauge from a report (the latest report computed wins)."""
    for row in report["psi"]:
        if row["psi"] is not None:
            PSI.labels(row["kind"], row["name"]).set(row["psi"])
    for feed in report["feeds"]["sources"]:
        FEED_COVERAGE.labels(feed["source"]).set(feed["coverage"])
        FEED_AGE.labels(feed["source"]).set(-1 if feed["age_days"] is None else feed["age_days"])
        FEED_MISSING.labels(feed["source"]).set(max(feed["missing"].values(), default=0.0))
    for row in report["overrides"]["rows"]:
        OVERRIDE_SHARE.labels(row["officer"], row["product"]).set(row["share"])
    ALERTS.labels("alert").set(report["alert_count"])
    ALERTS.labels("warning").set(report["warning_count"])
