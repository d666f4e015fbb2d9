"""The method registry: every trainable method, what it builds and how it trains.

Like torchvision's `list_models()` / `get_model()`: `list_methods()` names them,
`get_method(name)` returns a `MethodSpec` saying which models the method has (Task
Net or baseline, and a Meta Learner or not), which losses it minimises, which training
step it takes and how its Meta Learner's output is masked. `shared.models.build_models`,
`shared.training.LocalTrainer`, the DP trainer, the config schema and the CLI help all
read this one table. Torch-free, so the config and the CLI can use it before torch.

Table-2 baselines and ablations follow the MKCNet paper (Che, Chen & Chen, CVPR 2023)
and the papers it cites; docs/mkcnet.md says how each is built and where it departs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shared.errors import UserError

Step = Literal["supervised", "meta-auxiliary"]
Architecture = Literal["task-net", "vanilla", "canet", "detach"]
# How the Meta Learner's output is masked: one block of L per joint class (MKCNet),
# one block per diagnosis class (MAXL's hierarchy), or one block over everything.
Masking = Literal["joint", "diagnosis", "none"]
# What the Task Net's MAB combines with the diagnosis feature, and how.
Assist = Literal["auxiliary", "quality", "none"]
Fusion = Literal["mab", "fc", "concat"]


@dataclass(frozen=True)
class MethodSpec:
    """One method: its models, losses and training step."""

    name: str
    paper_name: str  # the row name in the MKCNet paper's tables
    summary: str
    architecture: Architecture
    step: Step
    losses: tuple[str, ...]
    quality_head: bool = True
    meta_learner: bool = False
    first_order: bool = False
    masking: Masking = "joint"
    assist: Assist = "auxiliary"  # task-net only: the feature that assists diagnosis
    fusion: Fusion = "mab"  # task-net only: how it is combined
    side_weight: float = 0.0  # weight of the deeply supervised side heads (CANet, DETACH)

    @property
    def models(self) -> tuple[str, ...]:
        return ("task_net", "meta_learner") if self.meta_learner else ("task_net",)

    @property
    def auxiliary_head(self) -> bool:
        """Whether the Task Net has the auxiliary (meta-knowledge) head L_W trains."""
        return self.meta_learner


def _mkcnet(name: str, paper: str, summary: str, **kw: object) -> MethodSpec:
    return MethodSpec(
        name,
        paper,
        summary,
        architecture="task-net",
        step="meta-auxiliary",
        losses=("L_D", "L_Q", "L_W", "R"),
        meta_learner=True,
        **kw,  # type: ignore[arg-type]
    )


_METHODS: tuple[MethodSpec, ...] = (
    _mkcnet("mkcnet", "MKCNet", "Task Net + Meta Learner, second-order meta-auxiliary learning"),
    _mkcnet(
        "mkcnet-first-order",
        "MKCNet (first order)",
        "MKCNet with a finite-difference Hessian-vector product (DARTS / MAXL)",
        first_order=True,
    ),
    _mkcnet(
        "mkcnet-no-mab",
        "w/o MAB",
        "MKCNet ablation: the diagnosis head sees f^d only (no meta-knowledge assistance)",
        assist="none",
    ),
    _mkcnet(
        "mkcnet-mab-fc",
        "MAB: FC",
        "MKCNet ablation: f^w passes a fully connected layer instead of the MAB filter",
        fusion="fc",
    ),
    _mkcnet(
        "mkcnet-mab-concat",
        "MAB: concat",
        "MKCNet ablation: f^w is concatenated with f^d as is (no filter)",
        fusion="concat",
    ),
    _mkcnet(
        "mkcnet-mask-diagnosis",
        "masking: diagnosis",
        "MKCNet ablation: y_w masked by the diagnosis class only (D blocks of L)",
        masking="diagnosis",
    ),
    _mkcnet(
        "mkcnet-no-mask",
        "w/o masking",
        "MKCNet ablation: no joint-encoding masking (softmax over all D*Q*L positions)",
        masking="none",
    ),
    MethodSpec(
        "mkcnet-no-meta",
        "w/o Meta",
        "MKCNet ablation: no Meta Learner; the quality feature f^q assists diagnosis",
        architecture="task-net",
        step="supervised",
        losses=("L_D", "L_Q"),
        assist="quality",
    ),
    MethodSpec(
        "vanilla",
        "Vanilla",
        "backbone + diagnosis head, focal loss",
        architecture="vanilla",
        step="supervised",
        losses=("L_D",),
        quality_head=False,
    ),
    MethodSpec(
        "multitask",
        "Vanilla + quality",
        "backbone + diagnosis and quality heads (plain multi-task learning)",
        architecture="vanilla",
        step="supervised",
        losses=("L_D", "L_Q"),
    ),
    MethodSpec(
        "canet",
        "CANet",
        "cross-task attention network (Li et al., TMI 2019): task-specific and "
        "task-dependent attention for diagnosis and quality",
        architecture="canet",
        step="supervised",
        losses=("L_D", "L_Q", "0.25 (L_D' + L_Q')"),
        side_weight=0.25,
    ),
    MethodSpec(
        "detach",
        "DETACH",
        "disentangled task features (Che et al., MICCAI 2022): each head reads its own "
        "feature and a gradient-detached copy of the other task's",
        architecture="detach",
        step="supervised",
        losses=("L_D", "L_Q", "L_D'", "L_Q'"),
        side_weight=1.0,
    ),
    MethodSpec(
        "maxl",
        "MAXL",
        "meta auxiliary learning (Liu et al., NeurIPS 2019): a label generator makes "
        "auxiliary labels inside each diagnosis class; no quality labels used",
        architecture="vanilla",
        step="meta-auxiliary",
        losses=("L_D", "L_W", "R"),
        quality_head=False,
        meta_learner=True,
        masking="diagnosis",
    ),
)
METHODS: dict[str, MethodSpec] = {m.name: m for m in _METHODS}
# The MKCNet paper's Table-2 methods this project implements, and its Vanilla.
TABLE2_METHODS = ("vanilla", "canet", "maxl", "detach", "mkcnet")


def list_methods() -> list[str]:
    """Names of all registered methods, in registry order."""
    return list(METHODS)


def get_method(name: str) -> MethodSpec:
    """The spec of method `name`; a one-line UserError naming the choices otherwise."""
    spec = METHODS.get(name)
    if spec is None:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return spec


def methods_help() -> str:
    """The CLI help line: every registered method."""
    return ", ".join(list_methods()) + " (docs/mkcnet.md)."
