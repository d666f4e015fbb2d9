"""Privacy accounting: one Opacus accountant per site, its history kept across rounds.

Every noisy step (a Task Net / baseline DP-SGD step, a Meta Learner DP step) is one
subsampled Gaussian mechanism with noise multiplier sigma and Poisson rate q; the
ledger records each as one accountant step, so epsilon covers every model that leaves
the site. The history is plain data (a list of (sigma, q, steps)), which is what the
site stores in its Flower Context between rounds and what a checkpoint carries.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared.config import PrivacyConfig
from shared.errors import UserError

if TYPE_CHECKING:
    from opacus.accountants import IAccountant

History = list[tuple[float, float, int]]
# Metric keys of a site's reply, and the node-config key of a site's own limit.
BUDGET_EXHAUSTED = "dp_budget_exhausted"
DP_UNIT_WEIGHT = "dp_unit_weight"
EPSILON_BUDGET = "epsilon-budget"


def make_accountant(kind: str, history: History | None = None) -> IAccountant:
    """A fresh Opacus accountant ("rdp" or "prv") replaying `history`."""
    # isort: off
    import shared.privacy.opacus_import  # noqa: F401  (before opacus: no double logging)
    from opacus.accountants import create_accountant
    # isort: on

    accountant = create_accountant(mechanism=kind)
    accountant.history = [tuple(h) for h in (history or [])]  # type: ignore[misc]
    return accountant


def epsilon_of(kind: str, history: History, delta: float) -> float:
    """epsilon after `history` at `delta`; 0 before any step, inf for noise 0."""
    return _epsilon(kind, tuple(tuple(h) for h in history), delta)  # type: ignore[arg-type]


@lru_cache(maxsize=256)
def _epsilon(kind: str, history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """Cached: an RDP evaluation costs a quarter second, and budget checks repeat it."""
    if not history or all(steps == 0 for _, _, steps in history):
        return 0.0
    if any(sigma <= 0 for sigma, _, steps in history if steps):
        return math.inf
    return float(make_accountant(kind, list(history)).get_epsilon(delta=delta))


def check_delta(delta: float, n: int) -> None:
    """delta must be well below 1/n, else releasing one record in the clear is allowed."""
    if n > 0 and delta >= 1.0 / n:
        raise UserError(
            f"--delta {delta:g} is not below 1/n = {1.0 / n:.3g} for {n} training examples; "
            "choose a smaller delta (e.g. 1e-5)"
        )


def calibrate(pc: PrivacyConfig, sample_rate: float, steps: int) -> float:
    """The noise multiplier: given, or the smallest reaching target_epsilon in `steps`."""
    if pc.noise_multiplier is not None:
        return float(pc.noise_multiplier)
    if pc.target_epsilon is None:
        raise UserError(
            "sample-level DP needs --noise-multiplier or --target-epsilon (with --delta)"
        )
    # isort: off
    import shared.privacy.opacus_import  # noqa: F401  (before opacus: no double logging)
    from opacus.accountants.utils import get_noise_multiplier
    # isort: on

    try:
        return float(
            get_noise_multiplier(
                target_epsilon=pc.target_epsilon,
                target_delta=pc.delta,
                sample_rate=sample_rate,
                steps=max(steps, 1),
                accountant=pc.accountant,
            )
        )
    except ValueError as err:
        raise UserError(f"--target-epsilon {pc.target_epsilon:g}: {err}") from None


def calibrate_remaining(
    pc: PrivacyConfig, history: History, sample_rate: float, steps: int
) -> float:
    """sigma for `steps` more steps after `history` so that the whole run ends at the
    target epsilon (a resumed run whose number of epochs changed); the given noise
    multiplier if there is one. Bisection like Opacus' `get_noise_multiplier`, with the
    spent history in the accountant."""
    if pc.noise_multiplier is not None or not history:
        return calibrate(pc, sample_rate, steps)
    assert pc.target_epsilon is not None
    target = pc.target_epsilon

    def eps(sigma: float) -> float:
        return epsilon_of(pc.accountant, [*history, (sigma, sample_rate, max(steps, 1))], pc.delta)

    if epsilon_of(pc.accountant, history, pc.delta) >= target:
        return float(history[-1][0])  # nothing left to spend: the budget check stops the run
    low, high = 0.0, 10.0
    while eps(high) > target:
        low, high = high, 2 * high
        if high > 1e6:
            raise UserError(f"--target-epsilon {target:g}: the privacy budget is too low")
    while True:
        mid = (low + high) / 2
        if high - low < 1e-4:
            return high
        value = eps(mid)
        if value < target:
            high = mid
            if target - value <= 0.01:  # Opacus' tolerance
                return high
        else:
            low = mid


@dataclass
class PrivacyLedger:
    """One site's (or one centralized run's) spending: the noise, the rate, the history."""

    accountant: str
    delta: float
    noise_multiplier: float
    sample_rate: float
    budget: float | None = None
    history: History = field(default_factory=list)
    # (epsilon, delta) already spent by DP-trained initial weights (an encoder), added
    # to this ledger's by basic composition
    prior_epsilon: float = 0.0
    prior_delta: float = 0.0

    @property
    def steps(self) -> int:
        return sum(int(s) for _, _, s in self.history)

    def step(self, count: int = 1, *, sigma: float | None = None) -> None:
        """Record `count` noisy steps (merged like Opacus). `sigma`: the noise multiplier
        the optimiser actually used (the trainers always pass it); default this ledger's."""
        if count <= 0:
            return
        sigma = float(self.noise_multiplier if sigma is None else sigma)
        if self.history and self.history[-1][:2] == (sigma, self.sample_rate):
            self.history[-1] = (sigma, self.sample_rate, self.history[-1][2] + count)
        else:
            self.history.append((sigma, self.sample_rate, count))

    def epsilon(self, extra_steps: int = 0) -> float:
        history = list(self.history)
        if extra_steps:
            history.append((self.noise_multiplier, self.sample_rate, extra_steps))
        return epsilon_of(self.accountant, history, self.delta) + self.prior_epsilon

    def exhausted(self, planned_steps: int) -> bool:
        """Whether `planned_steps` more would go past the budget (or it is already spent)."""
        if self.budget is None:
            return False
        return self.epsilon() >= self.budget or self.epsilon(planned_steps) > self.budget

    def metrics(self) -> dict[str, float]:
        """What a site reports each round (every key says `dp_`; epsilon keys say so)."""
        out = {
            "dp_epsilon": self.epsilon(),
            "dp_delta": self.delta + self.prior_delta,
            "dp_noise_multiplier": self.noise_multiplier,
            "dp_sample_rate": self.sample_rate,
            "dp_steps": float(self.steps),
        }
        if self.budget is not None:
            out["dp_budget"] = self.budget
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "accountant": self.accountant,
                "delta": self.delta,
                "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate,
                "budget": self.budget,
                "history": [list(h) for h in self.history],
                "prior_epsilon": self.prior_epsilon,
                "prior_delta": self.prior_delta,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> PrivacyLedger:
        doc: dict[str, Any] = json.loads(text)
        doc["history"] = [(float(s), float(q), int(n)) for s, q, n in doc["history"]]
        return cls(**doc)

    def summary(self) -> dict[str, Any]:
        """Checkpoint metadata: enough to recompute epsilon with any Opacus accountant."""
        return {
            **self.metrics(),
            "accountant": self.accountant,
            "history": [list(h) for h in self.history],
            "prior_epsilon": self.prior_epsilon,
        }
