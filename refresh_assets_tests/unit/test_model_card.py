"""The champion's model card: the trend read from the comparisons, the gates, the features and the undo command."""

from __future__ import annotations

from refresh_assets.core.model_card import champion_card, champion_trend


def _record(metrics: dict) -> dict:
    return {"metrics": metrics, "decision": {"gates": []}}


def test_trend_follows_the_champion_from_its_promotion():
    comparisons = [
        ("2026-01-11", _record({"champion_v2": {"roc_auc": 0.80}, "hist_gb": {"roc_auc": 0.81}})),  # before v3
        ("2026-01-25", _record({"champion_v3": {"roc_auc": 0.83}, "logreg": {"roc_auc": 0.82}})),
        ("2026-01-18", _record({"champion_v2": {"roc_auc": 0.80}, "hist_gb": {"roc_auc": 0.84}})),  # promoted v3
        ("2026-02-01", _record({"champion_v3": {"roc_auc": float("nan")}})),  # not computable: left out
        ("2026-02-08", _record({"champion_v3": {"roc_auc": 0.79}})),
    ]
    trend = champion_trend(comparisons, version=3, algorithm="hist_gb", promoted_on="2026-01-18")
    assert trend == [("2026-01-18", 0.84), ("2026-01-25", 0.83), ("2026-02-08", 0.79)]


def test_card_names_what_ops_need():
    champion = {"version": 3, "algorithm": "hist_gb", "partition_key": "2026-01-18", "dataset_hash": "ab" * 32,
                "created_at": "2026-01-18T06:00:01.5+00:00", "run_id": "1234abcd-ffff", "model_sha256": "cd" * 32,
                "metrics": {"roc_auc": 0.84, "brier": 0.1, "unlisted": 5}}
    decision = {"decision": {"gates": [
        {"name": "primary_metric_ci", "passed": True, "gated": True, "detail": "lower bound +0.004 > 0"},
        {"name": "delong_info", "passed": False, "gated": False, "detail": "informational"}]}}
    history = [{"version": 1}, {"version": 2}, {"version": 3}]
    card = champion_card(champion, decision, [("2026-01-18", 0.84), ("2026-01-25", 0.82)],
                         {"spend": 0.01, "sessions": -0.05, "level": 0.02}, history, trend_image="![t](data:x)")
    assert card.startswith("### Champion v3: hist_gb")
    assert "partition 2026-01-18, dataset `abababababab`" in card
    assert "| 0.8400 | 0.1000 |" in card and "unlisted" not in card
    assert "latest 0.8200, -0.0200 since promotion" in card and "![t](data:x)" in card
    assert "`primary_metric_ci` passed" in card and "delong_info" not in card  # only gates that decide
    assert card.index("| sessions |") < card.index("| level |") < card.index("| spend |")  # by |importance|
    assert 'refresh-assets rollback --version 2 --reason "..."' in card and "v1, v2" in card


def test_first_champion_without_its_comparison():
    champion = {"version": 1, "algorithm": "logreg", "metrics": {}}
    card = champion_card(champion, None, [], None, [{"version": 1}])
    assert "no longer in the output store" in card
    assert "no earlier version to roll back to" in card and "Holdout" not in card
