"""Build the models a method needs from a RunConfig, as its registry entry says."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from shared.config import RunConfig
from shared.methods import METHODS, get_method
from shared.models.attention import _SpatialConv
from shared.models.backbones import build_backbone
from shared.models.baselines import VanillaNet
from shared.models.comparison import DETACH, CANet
from shared.models.meta_learner import MetaLearner
from shared.models.task_net import TaskNet

# Methods whose auxiliary target comes from a Meta Learner trained by meta-auxiliary learning.
META_METHODS = tuple(name for name, spec in METHODS.items() if spec.meta_learner)


@dataclass
class ModelBundle:
    """The Task Net (or baseline) and, for MKCNet methods, its Meta Learner."""

    task_net: nn.Module
    meta_learner: MetaLearner | None = None

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"task_net": self.task_net}
        if self.meta_learner is not None:
            out["meta_learner"] = self.meta_learner
        return out

    def to(self, device: object) -> ModelBundle:
        for module in self.modules().values():
            module.to(device)  # type: ignore[arg-type]
        return self

    def train(self, mode: bool = True) -> ModelBundle:
        for module in self.modules().values():
            module.train(mode)
        return self

    def eval(self) -> ModelBundle:
        return self.train(False)


def auxiliary_size(cfg: RunConfig) -> int | None:
    """Size of the auxiliary head: D*Q*L (D*L when masked by diagnosis); None without one."""
    spec = get_method(cfg.method)
    if not spec.auxiliary_head:
        return None
    blocks = cfg.dataset.num_diagnosis if spec.masking == "diagnosis" else cfg.dataset.joint_classes
    return blocks * cfg.model.meta_length


def build_models(cfg: RunConfig) -> ModelBundle:
    """The method's models; BatchNorm becomes GroupNorm where `cfg.norm_layer` says so,
    so a site and the server always build the same architecture from one config."""
    bundle = _build_models(cfg)
    if cfg.norm_layer == "group":
        # isort: off
        import shared.privacy.opacus_import  # noqa: F401  (before opacus: no double logging)
        from opacus.validators import ModuleValidator  # only DP runs pay for the import
        # isort: on

        bundle.task_net = ModuleValidator.fix(bundle.task_net)
        for model in bundle.modules().values():
            for module in model.modules():
                if isinstance(module, nn.ReLU):  # in place breaks Opacus' backward hooks
                    module.inplace = False
        if cfg.model.gab == "pooled":
            # the spatial gate sees a 1x1 map there: one value per example cannot be
            # normalised on its own (BatchNorm normalised it across the batch)
            for module in bundle.task_net.modules():
                if isinstance(module, _SpatialConv):
                    module.bn = nn.Identity()  # type: ignore[assignment]
        if bundle.meta_learner is not None:
            bundle.meta_learner = ModuleValidator.fix(bundle.meta_learner)
    return bundle


def _build_models(cfg: RunConfig) -> ModelBundle:
    ds, mc = cfg.dataset, cfg.model
    spec = get_method(cfg.method)

    def backbone() -> nn.Module:
        return build_backbone(mc.backbone, ds.channels, mc.width, mc.pretrained_weights)

    quality = ds.num_quality if spec.quality_head else None
    task_net: nn.Module
    if spec.architecture == "vanilla":
        task_net = VanillaNet(backbone(), ds.num_diagnosis, quality, auxiliary_size(cfg))
    elif spec.architecture == "canet":
        task_net = CANet(backbone(), ds.num_diagnosis, ds.num_quality)
    elif spec.architecture == "detach":
        task_net = DETACH(backbone(), ds.num_diagnosis, ds.num_quality)
    else:
        task_net = TaskNet(
            backbone(),
            ds.num_diagnosis,
            ds.num_quality,
            auxiliary_size(cfg),
            gab=mc.gab,
            assist=spec.assist,
            fusion=spec.fusion,
        )
    meta = None
    if spec.meta_learner:
        meta = MetaLearner(
            backbone(),
            ds.joint_classes,
            mc.meta_length,
            masking=spec.masking,
            num_diagnosis=ds.num_diagnosis,
        )
    return ModelBundle(task_net, meta)
