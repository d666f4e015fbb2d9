"""Differential privacy of everything a site sends (docs/privacy.md).

- `budget`: the accountant (Opacus RDP / PRV), noise calibration, the per-site ledger
  that persists across rounds, and the budget check;
- `meta`: per-example meta-gradients of the Meta Learner (torch.func.vmap);
- `trainer`: DP-SGD local training (Opacus GradSampleModule + DPOptimizer, Poisson
  sampling) for the Task Net, the baselines and the Meta Learner;
- `rules`: which settings combine with which DP mode (one-line UserErrors).
"""
