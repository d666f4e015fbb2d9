"""The one configuration schema: dataset, model, optimisation and run settings.

Presets for the five published datasets carry the MKCNet authors' settings
(`hparams.tsv` in the reference data); a test keeps them in step with that file.
Configs load from TOML or YAML and take dotted CLI overrides (`optim.lr=0.001`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.config_errors import flag_name, format_validation
from shared.errors import UserError, unknown_choice
from shared.methods import METHODS
from shared.privacy.config import PrivacyConfig, PrivacyMode  # noqa: F401  (part of the schema)

MethodName = Literal[tuple(METHODS)]  # type: ignore[valid-type]
DatasetName = Literal["EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD_CXR"]
Schedule = Literal["paper", "fused"]
GabPlacement = Literal["pooled", "spatial"]
NormLayer = Literal["batch", "group"]


# torch-free here so config errors stay fast; shared/training/precision.py resolves "auto"
PrecisionName = Literal["auto", "fp32", "bf16", "fp16"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetConfig(Strict):
    """What the data looks like: classes, channels, normalisation, split protocol."""

    name: DatasetName = "EYEQ"
    modality: Literal["fundus", "octa", "ct", "cxr"] = "fundus"
    channels: Literal[1, 3] = 3
    num_diagnosis: int = Field(3, ge=2, le=100)
    num_quality: int = Field(3, ge=2, le=100)
    diagnosis_names: list[str] = Field(default_factory=lambda: ["NoDR", "NPDR", "PDR"])
    quality_names: list[str] = Field(default_factory=lambda: ["HQ", "LQ-U", "LQ-P"])
    five_grade_dr: bool = True
    norm_mean: list[float] = Field(default_factory=lambda: [0.4021, 0.2667, 0.1847])
    norm_std: list[float] = Field(default_factory=lambda: [0.2991, 0.2090, 0.1680])
    splits: list[str] = Field(default_factory=lambda: ["train", "val", "test"])
    split_fractions: list[float] = Field(default_factory=lambda: [0.6, 0.1, 0.3])
    report_last_epoch: bool = False

    @property
    def joint_classes(self) -> int:
        return self.num_diagnosis * self.num_quality


class ModelConfig(Strict):
    backbone: str = "vgg16_bn"
    width: float = Field(1.0, gt=0.0, le=4.0)
    gab: GabPlacement = "pooled"
    meta_length: int = Field(5, ge=1, le=64)
    pretrained_weights: Path | None = None
    # BatchNorm (the paper) or GroupNorm; any DP mode forces "group" (RunConfig.norm_layer)
    norm: NormLayer = "batch"


class OptimConfig(Strict):
    lr: float = Field(0.01, gt=0.0, le=10.0)
    meta_lr: float = Field(0.001, gt=0.0, le=10.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    meta_weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    lr_step_epochs: int = Field(25, ge=1)
    lr_gamma: float = Field(0.5, gt=0.0, le=1.0)
    entropy_weight: float = Field(0.2, ge=0.0, le=10.0)
    # Entropy of each y_w (as DP training must use) instead of the paper's batch-mean
    # entropy: an ablation that measures what the DP objective changes (docs/privacy.md)
    entropy_per_example: bool = False
    focal_gamma: float = Field(2.0, ge=0.0, le=10.0)
    batch_size: int = Field(4, ge=1, le=4096)
    epochs: int = Field(100, ge=1, le=100000)


class ContrastiveConfig(Strict):
    """CoMCL pretraining (Hou et al., MICCAI 2024); defaults are the paper's settings
    (docs/comcl.md lists every remaining departure)."""

    tau: float = Field(0.07, gt=0.0, le=10.0)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    batch_size: int = Field(400, ge=4, le=65536)
    epochs: int = Field(800, ge=1, le=100000)
    # The encoder `fediqad pretrain` trains (the paper's ResNet-50); None: the diagnosis
    # model's backbone (`model.backbone`). Federated pretraining always uses the latter.
    backbone: str | None = "resnet50"
    # Patch side in pixels of the image file (full resolution, not the resized image).
    patch_size: int = Field(128, ge=8, le=4096)
    # Encoder input side; None: the patch side rounded up to a multiple of 32.
    input_size: int | None = Field(None, ge=32, le=4096, multiple_of=32)
    multi_level: bool = True
    hard_mining: bool = True
    # Projection head output (0 = none, the paper: the encoder's pooled features).
    projection_dim: int = Field(0, ge=0, le=4096)
    lesions_per_image: int = Field(4, ge=1, le=256)
    healthy_per_image: int = Field(2, ge=1, le=256)
    # Self-paced floor: fewer anchors than this fraction passing loss < 1/K_t -> keep
    # the easiest ones up to it (0 = the paper's rule alone; see docs/comcl.md).
    min_selected_fraction: float = Field(0.5, ge=0.0, le=1.0)


class SelectionConfig(Strict):
    """How central training picks `best.ckpt`: the MKCNet authors validate every 20
    epochs on hard-prediction AUC (binary tasks): `every_epochs=20, metric=
    "auc_hard_compat"` (docs/mkcnet.md, "Paper reproduction")."""

    every_epochs: int = Field(1, ge=1, le=100000)
    metric: Literal["auc", "auc_hard_compat"] = "auc"


class RunConfig(Strict):
    """Everything one training run needs; travels to federated sites as a ConfigRecord."""

    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    contrastive: ContrastiveConfig = Field(default_factory=ContrastiveConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    augment: bool = False  # flip/affine/brightness; off as in the paper (`--augment`)
    method: MethodName = "mkcnet"  # shared/methods.py: list_methods()
    schedule: Schedule = "paper"
    image_size: int = Field(256, ge=16, le=4096)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    precision: PrecisionName = "auto"  # shared/training/precision.py: bf16 on capable GPUs
    channels_last: bool | None = None  # None: on for CUDA
    num_workers: int | None = Field(None, ge=0, le=64)  # None: 0 on CPU, up to 8 on CUDA
    threads: int | None = Field(None, ge=1, le=512)

    @field_validator("image_size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"must be a multiple of 32 (five 2x poolings), got {v}")
        return v

    @property
    def norm_layer(self) -> NormLayer:
        """GroupNorm whenever DP is on: per-sample gradients need per-sample
        normalisation, and BatchNorm running statistics would leave a site unprotected."""
        return "group" if self.privacy.mode != "off" else self.model.norm


def _dataset(name: str, **kw: Any) -> DatasetConfig:
    return DatasetConfig(name=name, **kw)  # type: ignore[arg-type]


_GRADES = ["NoDR", "Mild", "Moderate", "Severe", "PDR"]
# The MKCNet authors' per-dataset settings (reference data: hparams.tsv, Table 1).
PRESETS: dict[str, RunConfig] = {
    "EYEQ": RunConfig(
        dataset=_dataset("EYEQ"),
        model=ModelConfig(meta_length=5),
        optim=OptimConfig(
            lr=0.01, meta_lr=0.001, lr_step_epochs=25, entropy_weight=0.2, batch_size=4, epochs=100
        ),
    ),
    # CoMCL's Table 1: the EYEQ folder (its files hold five grades) graded on all five
    "EYEQ_COMCL": RunConfig(
        dataset=_dataset("EYEQ", num_diagnosis=5, five_grade_dr=False, diagnosis_names=_GRADES),
        model=ModelConfig(backbone="resnet50", meta_length=5),
        optim=OptimConfig(lr_step_epochs=25, entropy_weight=0.2, batch_size=4, epochs=100),
        method="vanilla",
    ),
    "DEEPDR": RunConfig(
        dataset=_dataset(
            "DEEPDR",
            num_quality=2,
            quality_names=["HQ", "LQ"],
            norm_mean=[0.3771, 0.2320, 0.1395],
            norm_std=[0.1252, 0.0857, 0.0814],
            split_fractions=[0.6, 0.2, 0.2],
        ),
        model=ModelConfig(meta_length=7),
        optim=OptimConfig(
            lr=0.01, meta_lr=0.001, lr_step_epochs=20, entropy_weight=0.3, batch_size=4, epochs=200
        ),
    ),
    "DRAC": RunConfig(
        dataset=_dataset(
            "DRAC",
            modality="octa",
            channels=1,
            num_quality=2,
            quality_names=["HQ", "LQ"],
            five_grade_dr=False,
            norm_mean=[0.4134],
            norm_std=[0.0595],
            splits=["train"],
            split_fractions=[1.0],
            report_last_epoch=True,
        ),
        model=ModelConfig(meta_length=10),
        optim=OptimConfig(
            lr=0.01, meta_lr=0.01, lr_step_epochs=50, entropy_weight=0.5, batch_size=8, epochs=200
        ),
    ),
    "IQAD_CT": RunConfig(
        dataset=_dataset(
            "IQAD_CT",
            modality="ct",
            channels=1,
            num_diagnosis=2,
            num_quality=2,
            diagnosis_names=["Normal", "Covid-19"],
            quality_names=["HQ", "LQ"],
            five_grade_dr=False,
            norm_mean=[0.6269],
            norm_std=[0.2909],
            split_fractions=[0.7, 0.1, 0.2],
        ),
        model=ModelConfig(meta_length=5),
        optim=OptimConfig(
            lr=0.01, meta_lr=0.01, lr_step_epochs=20, entropy_weight=0.2, batch_size=4, epochs=200
        ),
    ),
    "IQAD_CXR": RunConfig(
        dataset=_dataset(
            "IQAD_CXR",
            modality="cxr",
            channels=1,
            num_diagnosis=2,
            num_quality=3,
            diagnosis_names=["Normal", "Pneumonia"],
            quality_names=["HQ", "LQ-C", "LQ-A"],
            five_grade_dr=False,
            norm_mean=[0.4813],
            norm_std=[0.2361],
            split_fractions=[0.7, 0.1, 0.2],
        ),
        model=ModelConfig(meta_length=7),
        optim=OptimConfig(
            lr=0.01, meta_lr=0.001, lr_step_epochs=20, entropy_weight=0.3, batch_size=8, epochs=200
        ),
    ),
}


def preset(name: str) -> RunConfig:
    """A fresh copy of a dataset preset (case-insensitive; `IQAD-CT` also accepted)."""
    key = name.upper().replace("-", "_")
    if key not in PRESETS:
        raise unknown_choice("dataset", name, PRESETS)
    return PRESETS[key].model_copy(deep=True)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """tree["a"]["b"] = value for "a.b": the one way a dotted override is applied."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {dotted!r}: {part!r} is not a section")
    node[parts[-1]] = value


def parse_assignment(
    item: str, flag: str = "--set", shape: str = "section.field=value"
) -> tuple[str, Any]:
    """`KEY=VALUE` from a command line: the key stripped, the value parsed as YAML."""
    if "=" not in item:
        raise UserError(f"{flag} {item!r} must look like {shape}")
    key, raw = item.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw else ""
    return key.strip(), value


def build_config(
    dataset: str | None = None,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    set_items: list[str] | None = None,
    base: RunConfig | None = None,
) -> RunConfig:
    """Preset (or `base`), then file, then explicit overrides (dotted keys), then `--set`
    items, validated once at the end."""
    tree: dict[str, Any] = {}
    source = "defaults"
    if config_file is not None:
        tree = load_config_tree(config_file)
        source = str(config_file)
    name = dataset or tree.get("dataset", {}).get("name") or "EYEQ"
    start = base.model_dump() if base is not None else preset(name).model_dump()
    merged = _deep_merge(start, tree)
    given: dict[str, str] = {}  # dotted field -> how the user wrote it
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(merged, key, value)
            given[key] = flag_name(key)
    for item in set_items or []:
        key, value = parse_assignment(item)
        set_dotted(merged, key, value)
        given[key] = f"--set {key}"
        if source == "defaults":
            source = "--set"
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as err:
        raise UserError(format_validation(err, source, RunConfig, given)) from None


def load_config_tree(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError("config file not found; pass an existing .toml or .yaml file", path=path)
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
            if not isinstance(data, dict):
                raise UserError("config must be a mapping of sections", path=path)
            return data
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as err:
        raise UserError(f"cannot parse config: {err}".splitlines()[0], path=path) from None
    raise UserError("config must end in .toml, .yaml or .yml", path=path)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(tree: dict[str, Any], source: str = "config") -> RunConfig:
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise UserError(format_validation(err, source, RunConfig)) from None
