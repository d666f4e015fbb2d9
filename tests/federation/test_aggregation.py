"""Aggregation math of every strategy on hand-made arrays, through Flower's strategies.

Two models (a stand-in Task Net and Meta Learner with BatchNorm) travel as separate
records; the expected values are computed here with numpy from the papers' formulas.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord

from server.aggregation import AggregationFailed, Update, aggregate
from server.config import FederationConfig
from server.layout import GlobalModels, ModelLayout
from server.strategies import aggregates_buffers, build_strategy, weighted_metrics
from server.validation import RejectedUpdate, decode_train_reply
from shared.records import NUM_EXAMPLES
from tests.support.flower import InProcessGrid, reply, tiny_bundle

Arrays = dict[str, dict[str, np.ndarray]]


class Setup:
    def __init__(self, strategy: str, n_sites: int, **fed_kw: object):
        self.fed = FederationConfig(strategy=strategy, min_nodes=n_sites, **fed_kw)
        self.layout = ModelLayout.from_bundle(tiny_bundle(), fedbn=self.fed.fedbn)
        self.glob = GlobalModels.from_bundle(self.layout, tiny_bundle())
        self.strategy = build_strategy(self.fed)
        self.with_buffers = aggregates_buffers(self.fed)
        self.grid = InProcessGrid({i: None for i in range(n_sites)})  # type: ignore[misc]
        self.config = ConfigRecord()

    def site_arrays(self, seed: int, scale: float = 1.0) -> Arrays:
        rng = np.random.default_rng(seed)
        out: Arrays = {}
        for model in self.layout.models:
            out[model] = {}
            for key in self.layout.shared_keys(model):
                shape, dtype = self.layout.shapes[model][key], self.layout.dtypes[model][key]
                if dtype.kind in "iu":
                    out[model][key] = np.asarray(rng.integers(0, 10, shape), dtype=dtype)
                else:
                    out[model][key] = (scale * rng.normal(size=shape)).astype(dtype)
        return out

    def round(self, rnd: int, sites: list[Arrays], weights: list[float]) -> Arrays:
        flat = self.glob.flat(with_buffers=self.with_buffers)
        list(self.strategy.configure_train(rnd, flat, self.config, self.grid))
        updates = [
            Update(f"site{i}", a, w, reply(i, a, w))
            for i, (a, w) in enumerate(zip(sites, weights, strict=True))
        ]
        merged, _ = aggregate(
            self.strategy, rnd, self.layout, updates, with_buffers=self.with_buffers
        )
        for model, arrays in merged.items():
            for key, value in arrays.items():
                self.glob.update(model, key, value)
        return merged


def _jitter(setup: Setup, arrays: Arrays, seed: int, scale: float = 0.01) -> Arrays:
    """`arrays` with small noise on every float array (a distinct but nearby update)."""
    rng = np.random.default_rng(seed)
    return {
        m: {
            k: v + (scale * rng.normal(size=v.shape)).astype(v.dtype) if v.dtype.kind == "f" else v
            for k, v in arrays[m].items()
        }
        for m in setup.layout.models
    }


def _float_keys(setup: Setup, model: str, *, params_only: bool = False) -> list[str]:
    return [
        k
        for k in setup.layout.shared_keys(model)
        if setup.layout.dtypes[model][k].kind == "f"
        and not (params_only and k in setup.layout.buffers[model])
    ]


def _weighted(sites: list[Arrays], weights: list[float], model: str, key: str) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64) / sum(weights)
    return sum(wi * s[model][key].astype(np.float64) for wi, s in zip(w, sites, strict=True))


@pytest.mark.parametrize("name", ["fedavg", "fedprox"])
def test_fedavg_and_fedprox_average_both_models_weighted_by_examples(name: str):
    s = Setup(name, 3)
    sites, weights = [s.site_arrays(i) for i in range(3)], [10.0, 30.0, 60.0]
    merged = s.round(1, sites, weights)
    assert set(merged) == {"task_net", "meta_learner"}
    for model in s.layout.models:
        for key in s.layout.shared_keys(model):
            np.testing.assert_allclose(
                merged[model][key], _weighted(sites, weights, model, key), rtol=1e-5, atol=1e-6
            )
    if name == "fedprox":
        assert s.config["proximal-mu"] == pytest.approx(0.01)


def test_integer_counters_are_rounded_back_to_their_dtype():
    s = Setup("fedavg", 2)
    sites = [s.site_arrays(i) for i in range(2)]
    sites[0]["task_net"]["bn.num_batches_tracked"] = np.asarray(2, dtype=np.int64)
    sites[1]["task_net"]["bn.num_batches_tracked"] = np.asarray(5, dtype=np.int64)
    s.round(1, sites, [1.0, 1.0])
    value = s.glob.arrays["task_net"]["bn.num_batches_tracked"]
    assert value.dtype == np.int64 and value.shape == () and int(value) == 4  # rint(3.5)


def test_fedmedian_is_the_elementwise_median():
    s = Setup("fedmedian", 3)
    sites = [s.site_arrays(i) for i in range(3)]
    merged = s.round(1, sites, [1.0, 1.0, 100.0])
    for model in s.layout.models:
        for key in _float_keys(s, model):
            expect = np.median(np.stack([x[model][key] for x in sites]), axis=0)
            np.testing.assert_allclose(merged[model][key], expect, rtol=1e-6)


def test_fedtrimmedavg_drops_the_extremes_per_element():
    s = Setup("fedtrimmedavg", 5, trim_beta=0.2)
    sites = [s.site_arrays(i) for i in range(5)]
    sites[4] = s.site_arrays(4, scale=1000.0)  # an outlier site
    merged = s.round(1, sites, [1.0] * 5)
    for model in s.layout.models:
        for key in _float_keys(s, model):
            stacked = np.sort(np.stack([x[model][key] for x in sites]), axis=0)
            np.testing.assert_allclose(
                merged[model][key], stacked[1:4].mean(0), rtol=1e-5, atol=1e-6
            )


def test_krum_never_selects_the_outlier_and_judges_both_models_together():
    s = Setup("krum", 5, num_malicious=1)
    sites = [_jitter(s, s.site_arrays(0), seed) for seed in range(1, 5)]
    outlier = s.site_arrays(9, scale=50.0)
    merged = s.round(1, sites + [outlier], [1.0] * 5)
    chosen = [
        i
        for i, site in enumerate(sites)
        if all(
            np.allclose(merged[m][k], site[m][k])
            for m in s.layout.models
            for k in _float_keys(s, m)
        )
    ]
    assert len(chosen) == 1  # Krum picks one whole update, Task Net and Meta Learner alike


def test_multikrum_averages_the_selected_updates_weighted_by_examples():
    s = Setup("multikrum", 5, num_malicious=1, krum_select=2)
    near = [_jitter(s, s.site_arrays(0), seed) for seed in (1, 2)]  # close, not identical
    far = [s.site_arrays(seed, scale=30.0) for seed in (7, 8, 9)]
    weights = [1.0, 3.0, 1.0, 1.0, 1.0]
    merged = s.round(1, near + far, weights)
    for model in s.layout.models:
        for key in _float_keys(s, model):
            np.testing.assert_allclose(
                merged[model][key], _weighted(near, weights[:2], model, key), rtol=1e-5, atol=1e-6
            )
    # the two selected updates differ enough that a plain mean would not pass
    key = _float_keys(s, "task_net", params_only=True)[0]
    plain = _weighted(near, [1.0, 1.0], "task_net", key)
    assert not np.allclose(merged["task_net"][key], plain, rtol=1e-5, atol=1e-6)


def test_fedadam_applies_adam_to_parameters_and_averages_buffers():
    s = Setup("fedadam", 2, eta=0.05, beta_1=0.9, beta_2=0.99, tau=1e-3)
    x0 = {
        m: {k: v.astype(np.float64) for k, v in s.glob.arrays[m].items()} for m in s.layout.models
    }
    sites, weights = [s.site_arrays(i) for i in range(2)], [1.0, 3.0]
    merged = s.round(1, sites, weights)
    eta_norm = 0.05 * np.sqrt(1 - 0.99**2) / (1 - 0.9**2)
    for model in s.layout.models:
        for key in _float_keys(s, model, params_only=True):
            delta = _weighted(sites, weights, model, key) - x0[model][key]
            m, v = 0.1 * delta, 0.01 * delta**2
            expect = x0[model][key] + eta_norm * m / (np.sqrt(v) + 1e-3)
            np.testing.assert_allclose(merged[model][key], expect, rtol=1e-4, atol=1e-5)
        for key in s.layout.buffers[model]:  # running statistics: plain weighted mean
            np.testing.assert_allclose(
                merged[model][key], _weighted(sites, weights, model, key), rtol=1e-5, atol=1e-6
            )


def test_fedavgm_keeps_server_momentum_across_rounds():
    s = Setup("fedavgm", 2, server_lr=1.0, server_momentum=0.9)
    weights = [1.0, 1.0]
    r1 = [s.site_arrays(i) for i in range(2)]
    x0 = {
        m: {k: v.astype(np.float64) for k, v in s.glob.arrays[m].items()} for m in s.layout.models
    }
    merged1 = s.round(1, r1, weights)
    r2 = [s.site_arrays(10 + i) for i in range(2)]
    merged2 = s.round(2, r2, weights)
    for model in s.layout.models:
        for key in _float_keys(s, model, params_only=True):
            avg1, avg2 = _weighted(r1, weights, model, key), _weighted(r2, weights, model, key)
            np.testing.assert_allclose(merged1[model][key], avg1, rtol=1e-5, atol=1e-6)
            pg1 = x0[model][key] - avg1
            pg2 = avg1 - avg2
            expect = avg1 - (0.9 * pg1 + pg2)
            np.testing.assert_allclose(merged2[model][key], expect, rtol=1e-4, atol=1e-5)


def test_fedbn_keeps_batchnorm_out_of_the_exchange():
    s = Setup("fedbn", 2)
    for model in s.layout.models:
        assert not any(k.startswith("bn.") for k in s.layout.shared_keys(model))
        assert "bn.running_var" in s.layout.local[model]
    before = s.glob.arrays["task_net"]["bn.weight"].copy()
    merged = s.round(1, [s.site_arrays(i) for i in range(2)], [1.0, 1.0])
    assert not any(k.startswith("bn.") for m in merged.values() for k in m)
    np.testing.assert_array_equal(s.glob.arrays["task_net"]["bn.weight"], before)
    wire = s.glob.wire("task_net", "float32")
    assert "bn.weight" not in wire and "conv.weight" in wire


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda a: a["task_net"]["fc.weight"].__setitem__((0, 0), np.nan), "non-finite"),
        (lambda a: a["meta_learner"].__setitem__("fc.bias", np.zeros(3, np.float32)), "shape"),
        (lambda a: a["task_net"].pop("conv.bias"), "keys differ"),
        (lambda a: a.pop("meta_learner"), "no 'meta_learner'"),
    ],
)
def test_malformed_updates_are_rejected(corrupt, match):
    s = Setup("fedavg", 2)
    arrays = s.site_arrays(0)
    corrupt(arrays)
    with pytest.raises(RejectedUpdate, match=match):
        decode_train_reply(reply(0, arrays, 5.0).content, s.layout)


def test_zero_examples_is_rejected():
    s = Setup("fedavg", 2)
    with pytest.raises(RejectedUpdate, match=NUM_EXAMPLES):
        decode_train_reply(reply(0, s.site_arrays(0), 0.0).content, s.layout)


def test_no_updates_is_an_aggregation_failure():
    s = Setup("fedavg", 2)
    with pytest.raises(AggregationFailed):
        aggregate(s.strategy, 1, s.layout, [], with_buffers=True)


def test_metrics_are_weighted_by_the_images_they_were_computed_on():
    from flwr.app import MetricRecord, RecordDict

    a = RecordDict(
        {
            "metrics": MetricRecord(
                {NUM_EXAMPLES: 10.0, "n": 10.0, "auc": 0.5, "auc_lq": float("nan"), "n_lq": 0.0}
            )
        }
    )
    b = RecordDict(
        {
            "metrics": MetricRecord(
                {NUM_EXAMPLES: 30.0, "n": 30.0, "auc": 0.9, "auc_lq": 0.7, "n_lq": 20.0}
            )
        }
    )
    out = weighted_metrics([a, b])
    assert out["auc"] == pytest.approx(0.8)
    assert out["auc_lq"] == pytest.approx(0.7)  # the site without LQ images does not count
    assert out["n"] == 40.0
