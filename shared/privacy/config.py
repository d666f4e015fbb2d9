"""The privacy section of the run config (`RunConfig.privacy`; docs/privacy.md).

Its own module so that `shared/config.py` stays one screenful per concept; importable
without torch or Opacus, like the rest of the schema.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PrivacyMode = Literal["off", "sample", "client"]


class PrivacyConfig(BaseModel):
    """Differential privacy of what a site sends (docs/privacy.md).

    `sample`: DP-SGD at each site (Opacus) for the Task Net / baseline and the Meta
    Learner; `client`: Flower's fixed-clipping wrapper on the server (its noise and
    clipping norm are federation settings). Give a noise multiplier, or a target
    epsilon from which the noise is calibrated for the whole run.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    mode: PrivacyMode = "off"
    target_epsilon: float | None = Field(None, gt=0.0, le=1000.0)
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    noise_multiplier: float | None = Field(None, ge=0.0, le=1000.0)
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6)
    accountant: Literal["rdp", "prv"] = "rdp"
    # Stop training once spending more would exceed this (default: target_epsilon);
    # a site may set its own lower limit (node config `epsilon-budget`).
    epsilon_budget: float | None = Field(None, gt=0.0, le=1000.0)
    # Seed of the DP noise (None: fresh OS entropy each run, as a deployment should)
    noise_seed: int | None = Field(None, ge=0)
    # The user's statement that `model.pretrained_weights` saw no private data (e.g.
    # ImageNet, or a public dataset): only then may non-DP weights initialise a DP run.
    public_pretrained: bool = False
