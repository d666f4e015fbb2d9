"""`fediqad bench deploy-round` splits a round record's time into the slowest site's
handlers, Flower's messaging, the worker's hand-over and the server's own work."""

from __future__ import annotations

import pytest

from simulations.deploy_bench import round_cost


def test_a_round_record_splits_into_handler_flower_hand_over_and_server():
    record = {
        "round": 2,
        "timing": {
            "round_s": 10.0,
            "slowest_handler_s": 4.0,
            "train_phase_s": 6.0,
            "eval_phase_s": 3.0,
        },
        "sites": {
            "a": {"train": {"relay_seconds": 0.5}, "eval": {"relay_seconds": 0.25}},
            "b": {"train": {"relay_seconds": 0.75}, "eval": {}},
        },
    }
    cost = round_cost(record)
    assert cost.relay_s == pytest.approx(1.0)  # slowest hand-over per phase: 0.75 + 0.25
    assert cost.flower_s == pytest.approx(9.0 - 4.0 - 1.0)
    assert cost.server_s == pytest.approx(1.0)
    assert cost.outside_s == pytest.approx(6.0) and cost.outside_pct == pytest.approx(60.0)
    assert cost.flower_s + cost.relay_s + cost.server_s == pytest.approx(cost.outside_s)
