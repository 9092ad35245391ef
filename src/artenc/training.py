"""Training a contrastive head on a backbone, frozen or with its last stages trainable
(`backbone.trainable`), with Lightning + Hydra, from Python or the CLI.

`train(overrides)` composes the packaged Hydra configs, fits, validates the best checkpoint,
exports the encoder and returns a `TrainResult`; it needs no Hydra runtime, so it works
from a notebook. `artenc train [overrides]` and `python -m artenc.training [overrides]` run
`main`, the Hydra app, which calls the same function.

Hydra, OmegaConf and Lightning are optional (`pip install 'artenc[train]'`): they are
imported inside the functions, so `import artenc` works without them.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from artenc.atomic import atomic_write_json, atomic_write_text
from artenc.backbones import save_encoder
from artenc.errors import ArtencError, ParameterError, UsageError, require
from artenc.labels import read_labels_table
from artenc.layers import FeatureWrapper
from artenc.models.allocator import ALLOCATORS, apply_allocator
from artenc.models.logged_metrics import logged_metrics
from artenc.runtime import EmbeddingModule

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)

CONFIG_NAME = "train"
"""The primary Hydra config (`configs/train.yaml`)."""


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: absolute folder the run wrote to (checkpoints, logs, `encoder.pt`).
        encoder: the exported encoder (`run_dir/encoder.pt`, a model for embedding like
            any backbone name: `artenc.embed(..., model=str(encoder))`), or None when `export=false`
            or on non-zero DDP ranks.
        metrics: final scalar metrics of the validation of the best checkpoint (and the
            last training values), e.g. ``{"val/p_at_k": 0.47, ...}``; plain floats.
        best_checkpoint: the best Lightning checkpoint by `callbacks.model_checkpoint.monitor`
            (`val/p_at_k` by default), or None when
            checkpointing is off (e.g. `trainer.fast_dev_run=true`, `callbacks=none`).
    """

    run_dir: Path
    encoder: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: paths as strings (None stays None), metrics as floats."""
        return {
            "run_dir": str(self.run_dir),
            "encoder": None if self.encoder is None else str(self.encoder),
            "metrics": dict(self.metrics),
            "best_checkpoint": None if self.best_checkpoint is None else str(self.best_checkpoint),
        }


def config_dir() -> str:
    """The folder of the Hydra configs: `$ARTENC_CONFIG_DIR` when set, else the configs
    shipped inside the package (`artenc/configs`, found with `importlib.resources`, so a
    wheel install has them). Hydra's config-dir option or the override
    `hydra.searchpath=[file://DIR]` add a folder to the search path beside this one.

    Raises:
        FileNotFoundError: the folder has no `train.yaml`.
    """
    env = os.environ.get("ARTENC_CONFIG_DIR")
    # installed packages (wheel or editable) are plain folders, so the resource is a real path
    folder = Path(env).resolve() if env else Path(str(resources.files("artenc") / "configs"))
    if not (folder / f"{CONFIG_NAME}.yaml").is_file():
        source = "ARTENC_CONFIG_DIR" if env else "the artenc package"
        raise FileNotFoundError(f"artenc's Hydra configs were not found: {folder} (from {source}) has no "
                                f"{CONFIG_NAME}.yaml")
    return str(folder)


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """Compose the training config from `config_dir()` and Hydra `overrides`, without a
    Hydra run (Hydra's Compose API).

    The `hydra` node is kept (`return_hydra_config`), so `hydra.run.dir` can say where
    `train` writes, as on the command line. Sweeps (`a=1,2`) and `-m` are CLI-only.

    Raises:
        hydra.errors.ConfigCompositionException / OverrideParseException: an unknown
        config group or option, or a malformed override.
    """
    require("hydra", "train")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose(CONFIG_NAME, overrides=list(overrides or []), return_hydra_config=True)


def _run_dir(cfg: DictConfig, output_dir: str | os.PathLike | None) -> Path:
    """Where a run writes: `output_dir`, else `paths.output_dir` when set to a folder, else
    the config's `hydra.run.dir` (Hydra's choice, `outputs/train/<date>_<time>` by default).

    `paths.output_dir` reading Hydra's runtime (`${hydra:runtime.output_dir}`, the default)
    is never resolved here: after any Hydra call the process keeps a stale HydraConfig, which
    would send a notebook's run into an earlier run's folder. The Hydra job passes its run
    folder as `output_dir` instead (`_hydra_job`)."""
    from omegaconf import OmegaConf

    if output_dir is not None:
        return Path(output_dir).resolve()
    paths = OmegaConf.select(cfg, "paths", default=None)
    raw = OmegaConf.to_container(paths).get("output_dir") if paths is not None else None
    if raw is not None and "${hydra:" not in str(raw):
        return Path(str(cfg.paths.output_dir)).resolve()
    run_dir = OmegaConf.select(cfg, "hydra.run.dir", default=None)
    if run_dir is None:
        raise ParameterError("output_dir", "is needed: the config's paths.output_dir comes from Hydra's runtime "
                                           "and it has no hydra.run.dir; pass output_dir, or set paths.output_dir")
    return Path(str(run_dir)).resolve()


def _instantiate(node, **kwargs):
    """`hydra.utils.instantiate` (imported here: Hydra is optional)."""
    from hydra.utils import instantiate

    return instantiate(node, **kwargs)


def _instantiate_dict(node: DictConfig | None) -> list:
    """Instantiate every `_target_` entry of a {name: config} group (callbacks, loggers)."""
    from omegaconf import DictConfig

    if not node:
        return []
    return [_instantiate(c) for c in node.values() if isinstance(c, DictConfig) and "_target_" in c]


def _augment_at_backbone_size(cfg: DictConfig, backbone) -> None:
    """Augmented views are made at the backbone's input size: `data.augment.size: null` takes it.

    Another size is allowed in full mode when the backbone runs at it (a convolutional network
    with global pooling): training at a lower resolution than the test's (e.g. 176 px views for a
    224 px network) costs less per step, and random-resized crops seen smaller in training match
    objects seen at full size in testing ("FixRes", Touvron et al., NeurIPS 2019). Validation
    and the exported encoder keep the backbone's own preprocessing. Refused in cache mode (the
    cached views would not match the clean view's features or activation maps) and for a
    backbone that fails at that size (e.g. a ViT with fixed position embeddings)."""
    from omegaconf import open_dict

    size = backbone.preprocess.size
    augment = cfg.data.get("augment")
    if augment is None or "size" not in augment:
        return
    if augment.size is None:
        with open_dict(cfg):
            augment.size = size
        return
    asked = int(augment.size)
    if asked == size:
        return
    name = cfg.backbone.get("name", backbone.name)
    if cfg.data.get("mode") != "full":
        raise UsageError(f"data.augment.size={asked}, but the backbone {name} takes {size} px inputs: leave "
                         "data.augment.size=null to follow the backbone (another training size needs data.mode=full)")
    if asked < 32:
        raise ParameterError("data.augment.size", f"must be at least 32 px, got {asked}")
    try:
        with torch.no_grad():
            backbone.model.eval()(torch.zeros(1, 3, asked, asked))
    except Exception as exc:  # noqa: BLE001 - any failure means the network does not run at that size
        raise UsageError(f"data.augment.size={asked}: the backbone {name} does not run at {asked} px "
                         f"({type(exc).__name__}: {str(exc)[:200]}); leave data.augment.size=null for its "
                         f"{size} px") from None
    log.info("training views at %d px, validation and export at the backbone's %d px (data.augment.size)",
             asked, size)


FINE_TUNING_KEYS = ("trainable", "lr", "bn", "head_epochs")
"""Settings of the backbone group that are not arguments of its factory: the last `trainable`
stages train (0: frozen), at learning rate `lr` (null: a tenth of the head's), with BatchNorm
policy `bn` (frozen | train), after `head_epochs` epochs that train the head alone (0: from the
start); see `artenc.layers.stages` and `ContrastiveModule`."""


def _fine_tuning(cfg: DictConfig) -> tuple[DictConfig, dict]:
    """Split the backbone node into (the factory's config, the fine-tuning settings)."""
    from omegaconf import OmegaConf

    node = OmegaConf.to_container(cfg.backbone, resolve=True)
    tuning = {key: node.pop(key, None) for key in FINE_TUNING_KEYS}
    trainable = int(tuning["trainable"] or 0)
    if trainable < 0:
        raise ParameterError("backbone.trainable", f"must be >= 0 (the last stages that train; 0: frozen), got {trainable}")
    if tuning["bn"] not in (None, "frozen", "train"):
        raise ParameterError("backbone.bn", f"must be frozen or train, got {tuning['bn']!r}")
    head_epochs = int(tuning["head_epochs"] or 0)
    if head_epochs < 0 or (head_epochs and not trainable):
        raise ParameterError("backbone.head_epochs", f"must be >= 0, and 0 with a frozen backbone "
                                                     f"(backbone.trainable=0), got {head_epochs}")
    return OmegaConf.create(node), {"trainable": trainable, "backbone_lr": tuning["lr"], "bn": tuning["bn"] or "frozen",
                                    "head_epochs": head_epochs}


def build(cfg: DictConfig):
    """(backbone, datamodule, LightningModule) from a composed config."""
    backbone_cfg, tuning = _fine_tuning(cfg)
    backbone = _instantiate(backbone_cfg)
    _augment_at_backbone_size(cfg, backbone)
    # a dataclass passed to instantiate would be turned into a config node: bind it afterwards
    datamodule = _instantiate(cfg.data, _partial_=True)(backbone=backbone, trainable=tuning["trainable"],
                                                         head_epochs=tuning["head_epochs"])
    # backbone features are unit vectors (EmbeddingModule); the head normalises too, so the
    # exported encoder (raw pooled features -> head) computes exactly what was trained
    head = _instantiate(cfg.head, in_dim=backbone.dim, normalize_input=True)
    try:
        model = _instantiate(
            cfg.model, backbone=EmbeddingModule(backbone.model, backbone.preprocess), head=head,
            loss=_instantiate(cfg.loss), **tuning,
        )
    except Exception as exc:  # Hydra wraps the module's ValueError (e.g. too many stages)
        cause = exc.__cause__ if isinstance(exc.__cause__, ValueError) else None
        if cause is not None and "trainable" in str(cause):
            raise ParameterError("backbone.trainable", str(cause).removeprefix("trainable ")) from None
        raise
    return backbone, datamodule, model


def _labels_columns(data: DictConfig) -> list[str]:
    """The columns of `data.labels` (read as `artenc.labels.read_labels_table` reads it)."""
    if data.get("labels") is None:
        raise ParameterError("data.labels", "is not set: give the labels CSV (a `path` column and label "
                                            "columns), e.g. data.labels=images/labels.csv")
    try:
        return list(read_labels_table(str(data.labels)).columns)
    except ParameterError as exc:  # the library names its own parameter: name the setting instead
        raise ParameterError("data.labels", exc.problem) from None


def _label_fields(cfg: DictConfig) -> list[str]:
    """The label fields the LightningModule gets (`model.label_fields`, else `data.label_fields`)."""
    from omegaconf import OmegaConf

    for key in ("model.label_fields", "data.label_fields"):
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None:
            return [str(f) for f in value]
    return []


def _loss_class(cfg: DictConfig) -> type | None:
    """The class of `loss._target_`; None without a loss or when it cannot be imported here
    (instantiating it will say why)."""
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    target = OmegaConf.select(cfg, "loss._target_", default=None)
    if target is None:
        return None
    try:
        return get_class(str(target))
    except Exception:  # noqa: BLE001 - reported by instantiate, with Hydra's message
        return None


def _uses_classifier(cfg: DictConfig) -> bool:
    """Whether the loss's class trains a classifier (`uses_classifier`, e.g. loss=ce)."""
    return bool(getattr(_loss_class(cfg), "uses_classifier", False))


# The `_target_` nodes a run instantiates (by dotted name; "callbacks.*": each entry), and the
# keys of each that are consumed elsewhere rather than passed to the target.
_TARGET_NODES = ("data", "data.split", "data.augment", "backbone", "head", "loss", "model", "model.optimizer",
                 "model.scheduler", "trainer", "callbacks.*", "logger.*")
_CONSUMED_KEYS = {"backbone": FINE_TUNING_KEYS}
# Arguments `build` and Lightning pass themselves: not settings, so not listed as what a node takes.
_INJECTED = {"data": ("backbone", "trainable", "head_epochs"), "head": ("in_dim", "normalize_input"),
             "model": ("backbone", "head", "loss", "trainable", "backbone_lr", "bn", "head_epochs"),
             "model.optimizer": ("params",), "model.scheduler": ("optimizer", "total_steps"),
             "trainer": ("callbacks", "logger")}


def _target_nodes(cfg: DictConfig) -> list[tuple[str, DictConfig]]:
    """(dotted name, node) of every instantiated node of `_TARGET_NODES` that has a `_target_`."""
    from omegaconf import DictConfig, OmegaConf

    found = []
    for name in _TARGET_NODES:
        if name.endswith(".*"):
            group = OmegaConf.select(cfg, name[:-2], default=None)
            children = [(f"{name[:-2]}.{k}", v) for k, v in group.items()] if isinstance(group, DictConfig) else []
        else:
            children = [(name, OmegaConf.select(cfg, name, default=None))]
        found += [(n, v) for n, v in children if isinstance(v, DictConfig) and "_target_" in v]
    return found


def _check_target_arguments(cfg: DictConfig) -> None:
    """Each key of an instantiated node must be an argument of its `_target_`: a key left over
    from another option of a group (e.g. an experiment's `loss.temperature` under `loss=ce`)
    would otherwise fail as Hydra's TypeError once the data is loaded. Targets taking
    `**kwargs`, and targets that cannot be imported here (instantiate says why), are skipped."""
    import inspect

    from hydra.utils import get_object

    for name, node in _target_nodes(cfg):
        try:
            target = get_object(str(node._target_))
            params = inspect.signature(target).parameters
        except Exception:  # noqa: BLE001 - reported by instantiate, with Hydra's message
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        consumed = _CONSUMED_KEYS.get(name, ())
        unknown = [str(k) for k in node if not str(k).startswith("_") and k not in params and k not in consumed]
        if unknown:
            takes = ", ".join(p for p in params if p != "self" and p not in _INJECTED.get(name, ()))
            raise ParameterError(f"{name}.{unknown[0]}", f"is not a setting of {name} ({node._target_} takes: {takes}); "
                                                         "remove it, or pick the option it belongs to")


def _check_views(cfg: DictConfig) -> None:
    """data.views: a whole number >= 1, the number the loss needs (`required_views`, e.g. NT-Xent's
    2); data.augment.size: null or a whole number of pixels."""
    from omegaconf import OmegaConf

    views = OmegaConf.select(cfg, "data.views", default=None)
    if views is not None and (isinstance(views, bool) or not isinstance(views, int) or views < 1):
        raise ParameterError("data.views", f"must be a whole number >= 1 (views of each image per step), got {views!r}")
    loss = _loss_class(cfg)
    required = getattr(loss, "required_views", None)
    if required is not None and views is not None and views != required:
        raise ParameterError("data.views", f"is {views}, and loss {loss.__name__} needs exactly "
                                           f"{required} views per image: set data.views={required}")
    size = OmegaConf.select(cfg, "data.augment.size", default=None)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise ParameterError("data.augment.size", f"must be a whole number of pixels or null (the backbone's), "
                                                  f"got {size!r}")


def _check_monitors(cfg: DictConfig, logged: list[str]) -> None:
    """Each callback's `monitor` (checkpoint, early stopping) must be a metric the run logs;
    Lightning would otherwise stop with an error after the first epoch."""
    from omegaconf import DictConfig

    callbacks = cfg.get("callbacks")
    for name, node in (callbacks.items() if isinstance(callbacks, DictConfig) else []):
        if not isinstance(node, DictConfig) or "_target_" not in node or node.get("monitor") is None:
            continue
        if str(node.monitor) not in logged:
            kind = "labelled" if any(m.startswith("val/") for m in logged) else "unlabelled (no label field)"
            raise ParameterError(f"callbacks.{name}.monitor", f"{node.monitor!r} is not logged by this {kind} run; "
                                                              f"it logs {', '.join(logged)}")


def validate_config(cfg: DictConfig) -> None:
    """Refuse, before any heavy work, a training config that would fail late: one error
    naming the setting, in the order the run would meet them.

    Checked (each only when the config has the setting):
        data.root: set, and an existing folder.
        data.labels: set, an existing, readable CSV with a `path` column; or null (an
            unlabelled folder) with no data.label_fields.
        data.label_fields: a non-empty list of columns of that CSV.
        data.include (keys), data.split.column: columns of that CSV.
        loss: a classifier loss (e.g. loss=ce) needs a label field.
        data.views: a whole number >= 1, the loss's `required_views` if it has one (NT-Xent: 2);
            data.augment.size: null or a whole number.
        callbacks.<name>.monitor: a metric the run logs (`artenc.models.logged_metrics`).
        the `_target_` nodes (data, backbone, head, loss, model, trainer, callbacks,
            loggers...): every key is an argument of the target (`_check_target_arguments`).
        cpu_allocator: one of `artenc.models.allocator.ALLOCATORS`.
        ckpt_path: null or an existing file.

    Raises:
        ParameterError: its `param` is the setting's dotted name (e.g. "data.label_fields"),
            its message says what is wrong and with which value.

    Explicit checks rather than a typed schema (OmegaConf structured configs): the data node
    is a `_target_` config whose keys differ between data modules and user configs, and a
    schema would not see files on disk, which is what goes wrong.
    """
    from omegaconf import OmegaConf

    data = cfg.get("data")
    keys = set(data.keys()) if data is not None else set()  # `in` would skip a missing (???) value
    if "root" in keys:
        if OmegaConf.is_missing(data, "root") or data.root is None:
            raise ParameterError("data.root", "is not set: give the image folder to train on "
                                              "(e.g. data.root=images/, labels from data.labels=...)")
        if not Path(str(data.root)).is_dir():
            raise ParameterError("data.root", f"folder {data.root} not found")
    if "labels" in keys and data.get("labels") is None and "label_fields" in keys:
        if list(data.get("label_fields") or []):
            raise ParameterError("data.label_fields", f"{list(data.label_fields)} need a labels CSV, and data.labels "
                                                      "is null (an unlabelled folder): set data.label_fields=[] "
                                                      "(self-supervised, e.g. experiment=simclr) or data.labels=...")
    elif "labels" in keys:
        columns = _labels_columns(data)
        listed = f"(columns of {data.labels}: {', '.join(columns)})"
        fields = list(data.get("label_fields") or [])
        if "label_fields" in keys and not fields:
            raise ParameterError("data.label_fields", f"is empty: name at least one label column {listed}")
        missing = [f for f in fields if f not in columns]
        if missing:
            raise ParameterError("data.label_fields", f"{missing}: no such column {listed}")
        missing = [c for c in (data.get("include") or {}) if c not in columns]
        if missing:
            raise ParameterError("data.include", f"{missing}: no such column to filter on {listed}")
        column = OmegaConf.select(data, "split.column", default=None)
        if column is not None and column not in columns:
            raise ParameterError("data.split.column", f"{column!r}: no such column {listed}")
    fields = _label_fields(cfg)
    classifier = _uses_classifier(cfg)
    if classifier and not fields:
        raise ParameterError("loss", f"{cfg.loss._target_.rsplit('.', 1)[-1]} is a classifier: it needs a label field "
                                     "(its classes), and data.label_fields is empty (an unlabelled folder): set "
                                     "data.labels=... and data.label_fields=[...], or a self-supervised loss "
                                     "(loss=ntxent)")
    _check_monitors(cfg, logged_metrics(fields, classifier))
    _check_views(cfg)
    _check_target_arguments(cfg)
    allocator = cfg.get("cpu_allocator", "default")
    if allocator not in ALLOCATORS:
        raise ParameterError("cpu_allocator", f"must be one of {', '.join(ALLOCATORS)}, got {allocator!r}")
    ckpt = cfg.get("ckpt_path")
    if ckpt is not None and not Path(str(ckpt)).is_file():
        raise ParameterError("ckpt_path", f"file {ckpt} not found (a Lightning checkpoint to resume from, "
                                          "e.g. <run folder>/checkpoints/last.ckpt)")


def validate_jobs(configs: list[DictConfig]) -> None:
    """`validate_config` on each job's composed config of a launch that runs no job (the SLURM
    launcher's `dry_run=true` preview), so the preview refuses what the run would refuse.

    Raises:
        ParameterError: as `validate_config`, for the first job it refuses; with several
            jobs, the message starts with the job's number ("job 1: data.root ...")."""
    for num, cfg in enumerate(configs):
        try:
            validate_config(cfg)
        except ParameterError as exc:
            if len(configs) == 1:
                raise
            raise ParameterError(exc.param, f"{exc.problem} (job {num})") from None


def _scalars(metrics: dict) -> dict[str, float]:
    """Lightning's logged metrics as plain floats (one-element tensors only)."""
    return {k: float(v) for k, v in metrics.items() if torch.is_tensor(v) and v.numel() == 1}


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint a run starts from: `ckpt_path` when set (it always wins), else the
    newest of the run folder's `checkpoints/last.ckpt` (written at each epoch end) and
    `hpc_ckpt_<n>.ckpt` (written by Lightning's SLURM auto-requeue when the job is
    signalled before its time limit), else None (a fresh run).

    So a job re-run in its own folder (a SLURM requeue, submitit's resubmission after a
    time-out, or the same command again) continues where it stopped."""
    explicit = cfg.get("ckpt_path")
    if explicit is not None:
        return str(explicit)
    found = [p for p in [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    if not found:
        return None
    newest = max(found, key=lambda p: p.stat().st_mtime_ns)
    log.info("resuming from %s (the run folder's newest checkpoint; ckpt_path=... picks another)", newest)
    return str(newest)


def _single_logging_path() -> None:
    """One line per message: when the root logger has handlers (Hydra's job logging, a
    notebook's basicConfig), Lightning's own console handlers would print each of its
    messages a second time; its loggers then only propagate to the root."""
    if not logging.getLogger().handlers:
        return
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)
        logger.propagate = True


def save_run_config(cfg: DictConfig, run_dir: Path) -> Path:
    """Print the resolved config (log, INFO) and save it as `run_dir/config.yaml`, at the start
    of a run; returns the file. Values that cannot be resolved outside Hydra's runtime are
    kept as written."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException:
        text = OmegaConf.to_yaml(cfg)
    log.info("config (resolved):\n%s", text.rstrip())
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    atomic_write_text(path, text)
    return path


def _is_rank_zero() -> bool:
    """Before Lightning starts its processes: rank 0 unless a launcher set another rank."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in ("RANK", "LOCAL_RANK", "SLURM_PROCID"))


def check_resume_matches(path: str, model) -> None:
    """Refuse to resume from a checkpoint made with another loss or another number of trainable
    stages (`ContrastiveModule.on_save_checkpoint` records both), which would otherwise fail
    inside Lightning with an AttributeError or a state_dict mismatch; e.g. the same run folder
    re-used with another `loss=`. Checkpoints without the record (older ones) pass.

    Raises:
        ParameterError("ckpt_path"): the settings that differ, and what to do."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is reported by Lightning's own loading
        return
    now = {"loss": type(model.loss).__name__, "backbone.trainable": int(model.trainable)}
    was = {"loss": saved.get("artenc_loss"), "backbone.trainable": saved.get("artenc_trainable")}
    differ = [k for k in now if was[k] is not None and was[k] != now[k]]
    if differ:
        raise ParameterError("ckpt_path", f"{path} was trained with {', '.join(f'{k} {was[k]}' for k in differ)}; this "
                                          f"run has {', '.join(f'{k} {now[k]}' for k in differ)}: resume with the same "
                                          "settings, or start a new run folder (hydra.run.dir=... or output_dir=...)")


def _checkpoint_epoch(path: str) -> int | None:
    """The epoch a Lightning checkpoint was saved at, read with `torch.load(weights_only=True)`
    (no arbitrary unpickling); None when the file holds objects that loader refuses."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
    except Exception as exc:  # noqa: BLE001 - an unreadable epoch only leaves val_epoch unknown
        log.warning("%s: epoch not read (%s)", path, type(exc).__name__)
        return None


def train(overrides: list[str] | None = None, *, config: DictConfig | None = None,
          output_dir: str | os.PathLike | None = None) -> TrainResult:
    """Train a projection head on a frozen backbone and export the encoder.

    Args:
        overrides: Hydra overrides as on the command line, e.g.
            ``["experiment=wikiart_supcon", "trainer.max_epochs=5"]``, applied to the
            packaged `train.yaml` (`compose_config`).
        config: an already composed config instead of `overrides` (e.g. from
            `compose_config`, edited); it is copied, not changed.
        output_dir: the run folder. Default: `paths.output_dir` if the overrides set it,
            else `hydra.run.dir` of the config (`outputs/train/<date>_<time>` under the
            current folder unless overridden, as with `artenc train`).

    Returns:
        `TrainResult`: the run folder, which holds `encoder.pt` (backbone + head +
        preprocessing, a `model` for `artenc.embed`; not written under `fast_dev_run`),
        `checkpoints/` (`last.ckpt` and the best by `callbacks.model_checkpoint.monitor`:
        `val/p_at_k`, `val/classifier_accuracy` with loss=ce, `train/loss_epoch` for
        experiment=simclr; trainable weights only), the
        logger's files, `embedding_map.png`, `config.yaml` (the resolved config, written and
        printed at the start), `split.csv` (which rows validated; read back on resume) and
        `metrics.json` (the final metrics, the validation size, `epochs` trained, and the
        0-based epochs the values come from: `train_epoch` for train/*, the last, and
        `val_epoch` for val/*, the best checkpoint's); the encoder path; the
        final metrics (`val/p_at_k`, `val/map_at_k`, `val/r_at_k`, `val/knn_accuracy`,
        `val/linear_probe_accuracy`, leave-one-out within the validation split); the best
        checkpoint.

    Raises:
        ParameterError: both `overrides` and `config` given; no run folder can be found
            (`output_dir`); or, before anything heavy is imported or built, a setting
            `validate_config` refuses, named in the message ("data.labels file ... not found").
        UsageError: a config that cannot train (e.g. no usable labelled row, an augmentation
            size that differs from the backbone's input size).
        hydra.errors.HydraException: composition errors (unknown group, bad override).
        OptionalDependencyError / ImportError: Hydra or Lightning missing
            (`pip install 'artenc[train]'`).

    Multi-process strategies (`trainer=ddp`) re-run the command line for each process, so
    they need `artenc train`, not a notebook. Lightning (Falcon et al.) does the fitting;
    Hydra (Yadan 2019) the configuration.
    """
    if config is not None and overrides:
        raise ParameterError("overrides", "cannot be combined with config: compose the config with them "
                                          "(compose_config(overrides)) or pass one of the two")
    require("hydra", "train")
    from omegaconf import OmegaConf, open_dict

    cfg = copy.deepcopy(config) if config is not None else compose_config(overrides)
    run_dir = _run_dir(cfg, output_dir)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.pop("hydra", None)  # Hydra's own settings: only the run dir was needed
    validate_config(cfg)  # before any heavy work (Lightning's import alone takes seconds)
    if cfg.get("dry_run"):
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        log.info("dry_run: the config above is what would run; nothing was trained or written")
        return TrainResult(run_dir=run_dir, encoder=None)
    if _is_rank_zero():
        save_run_config(cfg, run_dir)
    require("lightning", "train")
    import lightning as L

    _single_logging_path()
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    apply_allocator(str(cfg.get("cpu_allocator", "default")))
    backbone, datamodule, model = build(cfg)
    ckpt_path = resume_checkpoint(cfg, run_dir)
    if ckpt_path is not None:
        check_resume_matches(ckpt_path, model)
    datamodule.split_file, datamodule.reuse_split = run_dir / "split.csv", ckpt_path is not None
    model.backbone_reference = {k: OmegaConf.to_container(cfg.backbone, resolve=True).get(k)
                                for k in ("_target_", "name", "weights")}
    loggers = _instantiate_dict(cfg.get("logger"))
    # the head-only epochs train on features, the later ones on activations: a new loader then
    reload = {"reload_dataloaders_every_n_epochs": model.head_epochs} if model.head_epochs else {}
    trainer: L.Trainer = _instantiate(
        cfg.trainer, callbacks=_instantiate_dict(cfg.get("callbacks")), logger=loggers or False, **reload
    )
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    fitted = {k: v for k, v in _scalars(trainer.callback_metrics).items() if k.startswith("train/")}
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    fit_loggers, trainer.loggers = trainer.loggers, []  # the final validation adds no epoch row to the logs
    try:
        trainer.validate(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)
    finally:
        trainer.loggers = fit_loggers
    metrics = {**fitted, **_scalars(trainer.callback_metrics)}  # last training values, best checkpoint's validation
    if trainer.is_global_zero:
        n_val = len(datamodule.val_set) if datamodule.val_set is not None else 0
        epochs = int(trainer.current_epoch)  # epochs trained; train/* values are the last one's
        val_epoch = _checkpoint_epoch(best) if best else epochs - 1
        atomic_write_json(run_dir / "metrics.json", {
            "metrics": metrics, "n_validation": n_val, "label_fields": list(datamodule.label_fields),
            "k": int(cfg.model.get("k", 10)), "backbone": str(cfg.backbone.get("name", "")),
            "epochs": epochs, "train_epoch": epochs - 1, "val_epoch": val_epoch})

    encoder = None
    if trainer.fast_dev_run:
        log.info("fast_dev_run: a smoke test, nothing exported")
    elif cfg.get("export", True) and trainer.is_global_zero:
        encoder = run_dir / "encoder.pt"
        features = backbone.model.config() if isinstance(backbone.model, FeatureWrapper) else None
        save_encoder(
            encoder, backbone_name=cfg.backbone.name, backbone=backbone.model, head=model.head.cpu(),
            preprocess=backbone.preprocess, features=features,
            extra={"label_fields": list(cfg.data.label_fields), "classes": datamodule.classes,
                   "checkpoint": best or None, "val_metrics": metrics,
                   "trainable_stages": int(getattr(model, "trainable", 0))},
            classifier=model.exported_classifier(),
        )
        log.info("exported encoder: %s (a model for artenc.embed and the embed command)", encoder)
    log.info("final metrics: %s", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return TrainResult(run_dir=run_dir, encoder=encoder, metrics=metrics,
                       best_checkpoint=Path(best).resolve() if best else None)


def _hydra_job(cfg: DictConfig) -> float | None:
    """The Hydra task: `train` on the config Hydra composed; returns the metric sweepers
    optimise (`optimized_metric`). An `ArtencError` (e.g. `validate_config`'s) is logged as
    one line and exits with its code (2 for a config error), ending a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN and "group" in cfg and cfg.group is None:
        with open_dict(cfg):  # W&B groups a sweep's jobs by its folder's name
            cfg.group = Path(str(hydra_cfg.sweep.dir)).name
    try:
        result = train(config=cfg, output_dir=hydra_cfg.runtime.output_dir)
    except ArtencError as exc:  # one line, the exit code of its kind (2: a config error), no traceback
        log.error("error: %s", exc)
        sys.exit(exc.exit_code)
    return result.metrics.get(cfg.get("optimized_metric") or "")


def _job_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The jobs of a command line: one, or with `-m` one per combination of the sweep values
    (Hydra's basic sweeper's expansion, e.g. `a=1,2 b=3,4` -> 4 jobs)."""
    if not multirun:
        return [list(overrides)]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def _resolved_node(cfg: DictConfig, key: str) -> Any:
    """`cfg[key]` resolved against the whole config; a value that cannot be resolved yet (an
    interpolation to a missing `???` setting, e.g. `data.labels: ${.root}/labels.csv` without
    data.root) is kept as written, its siblings resolved."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    node = cfg._get_node(key)
    try:
        return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else cfg[key]
    except OmegaConfBaseException:
        if isinstance(node, DictConfig):
            return {k: _resolved_node(node, k) for k in node}
        return OmegaConf.to_container(OmegaConf.masked_copy(cfg, [key]))[key]


def preview_config(argv: list[str]) -> str | None:
    """What `--cfg job|hydra|all [--resolve]` prints, for the command lines Hydra cannot show:
    combined with `-m` (one document per job of the sweep, `# job N: overrides` above each),
    or the `hydra` / `all` part resolved (the launcher's fields read the job's config, e.g.
    `tasks_per_node: ${trainer.devices}`, which Hydra's own `--cfg hydra` cuts away). None for
    any other command line (Hydra prints it). Runs no job.

    Each job's config is composed with its Hydra node, `hydra.job.num` and the run folder
    (`hydra.runtime.output_dir`: the sweep's `dir/subdir`, or `hydra.run.dir`) filled in as a
    launch would, so `${hydra:...}` values resolve.
    """
    from hydra._internal.utils import get_args_parser
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    args, _ = get_args_parser().parse_known_args(argv)
    if not args.cfg or not (args.multirun or (args.cfg in ("hydra", "all") and args.resolve)):
        return None
    if args.package or args.config_path or args.config_name:
        return None
    search = [f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]"] if args.config_dir else []
    documents, folders = [], {}
    jobs = _job_overrides(args.overrides, args.multirun)
    for num, job in enumerate(jobs):
        cfg = compose_config([*search, *job])
        with open_dict(cfg):
            cfg.hydra.job.num = num
            for name in ("run", "sweep"):  # one ${now:} for the whole sweep, as Hydra does
                cfg.hydra[name].dir = folders.setdefault(name, str(cfg.hydra[name].dir))
            sweep = cfg.hydra.sweep
            cfg.hydra.runtime.output_dir = f"{sweep.dir}/{sweep.subdir}" if args.multirun else cfg.hydra.run.dir
        HydraConfig.instance().set_config(cfg)
        keys = {"job": [k for k in cfg if k != "hydra"], "hydra": ["hydra"], "all": list(cfg)}[args.cfg]
        text = OmegaConf.to_yaml({k: _resolved_node(cfg, k) if args.resolve else cfg[k] for k in keys})
        documents.append((f"# job {num}: {' '.join(job)}\n" if len(jobs) > 1 or args.multirun else "") + text)
    return "---\n".join(documents)


def main() -> Any:
    """`artenc train` / `python -m artenc.training`: the Hydra app over `sys.argv[1:]`
    (overrides, multirun, config preview, help, config dir, `hydra/launcher=...`);
    `--cfg` with `-m`, and `--cfg hydra|all --resolve`, are printed by `preview_config`.

    A config error exits with code 2 and one message, no traceback (also one a launcher
    raises, e.g. the SLURM preview's `validate_jobs`): Hydra's own
    (`CompactHydraException`: an unknown config group, option or key, a malformed override,
    a config that cannot be instantiated) and artenc's (`ArtencError`, e.g. `validate_config`
    naming the setting, through `_hydra_job`). Hydra would print its own and exit 1: while the
    app runs, `HYDRA_FULL_ERROR=1` makes it re-raise them instead. Other failures keep their
    full traceback and exit 1.
    """
    import hydra
    from hydra.errors import CompactHydraException
    from omegaconf.errors import OmegaConfBaseException

    app = hydra.main(version_base="1.3", config_path=config_dir(), config_name=CONFIG_NAME)(_hydra_job)
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        preview = preview_config(sys.argv[1:])
        if preview is not None:
            print(preview, end="")
            return None
        return app()
    except ArtencError as exc:  # raised outside a job, e.g. by the SLURM launcher's dry_run (validate_jobs)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except CompactHydraException as exc:
        cause = exc.__cause__
        print(f"{exc}\n{cause}" if isinstance(cause, OmegaConfBaseException) else str(exc), file=sys.stderr)
        sys.exit(2)
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


if __name__ == "__main__":
    main()
