"""Command-line flags of ``train_resnet.py``, grouped as MXNet's image-classification example does
(``add_data_args(parser)``, ``add_model_args(parser)``, ``add_fit_args(parser)``), and their checks.

Names and defaults are the original's (tornadomeet/ResNet); flags that depend on the data type (``--end-epoch``,
``--lr-steps``, ``--num-classes``, ``--model-prefix``) default to None and are filled in by :func:`resolve_args`.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from pathlib import Path

from resnet_toolkit.checkpoint import add_retention_args, check_retention_args
from resnet_toolkit.cluster import parse_gpus
from resnet_toolkit.configfile import config_argv, load_config
from resnet_toolkit.data import (
    LAYOUTS,
    DatasetLayout,
    add_augmentation_args,
    check_augmentation_args,
)
from resnet_toolkit.distill import add_distill_args, check_distill_args
from resnet_toolkit.errors import UserError
from resnet_toolkit.fileio import check_writable_dir  # noqa: F401  (re-exported for fit.py and runplan.py)
from resnet_toolkit.precision import add_precision_args, check_dtype
from resnet_toolkit.recipe import add_recipe_args, check_recipe_args
from resnet_toolkit.schedule import DEFAULT_END_EPOCH, DEFAULT_LR, DEFAULT_STEPS, parse_steps
from resnet_toolkit.synset import SYNSET, read_synset
from resnet_toolkit.weights import add_finetune_args, check_finetune_args
from symbols.spec import add_network_args


def add_data_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    data = parser.add_argument_group("Data")
    data.add_argument("--data-dir", type=str, default="./data/imagenet/",
                      help="folder holding the .rec/.idx files (and synset.txt)")
    data.add_argument("--data-type", type=str, default="imagenet", choices=[*LAYOUTS, FOLDER],
                      help="cifar10 (32x32, 10 classes), imagenet (224x224, 1000), digits (the demo's 32x32 "
                           "digits, 10), folder: any packed image folder (give --train-rec, --val-rec, "
                           "--image-shape; --num-classes defaults to the lines of synset.txt)")
    data.add_argument("--train-rec", type=str, default=None, help="--data-type folder: training .rec in --data-dir")
    data.add_argument("--val-rec", type=str, default=None, help="--data-type folder: validation .rec in --data-dir")
    data.add_argument("--image-shape", type=str, default=None,
                      help="--data-type folder: network input 'C,H,W', e.g. 3,224,224 (H <= 64: CIFAR-style net)")
    data.add_argument("--list-dir", type=str, default="./",
                      help="accepted for the original's command lines and unused: the image counts come from "
                           "the .idx files beside the records")
    data.add_argument("--num-examples", type=int, default=None,
                      help="training images per epoch (default: every record, counted from the .idx); fewer "
                           "trains on the first N of each epoch's shuffle")
    data.add_argument("--num-classes", type=int, default=None,
                      help="classes of the network's output (default: 10 for cifar10/digits, 1000 for imagenet)")
    data.add_argument("--preprocess-threads", type=int, default=4, help="decode/augment threads of the iterator")
    data.add_argument("--seed", type=int, default=0,
                      help="seeds initialisation and, as seed+epoch, each epoch's shuffle and augmentation")
    return data


def add_model_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    model = parser.add_argument_group("Model")
    model.add_argument("--depth", type=int, default=50, help="network depth (see symbols/spec.py)")
    model.add_argument("--bn-mom", type=float, default=0.9, help="momentum of every BatchNorm's running statistics")
    model.add_argument("--workspace", type=int, default=512, help="convolution workspace, MB")
    model.add_argument("--memonger", action="store_true",
                       help="plan activation recomputation to save memory (Module path only)")
    model.add_argument("--api", type=str, default="module", choices=["module", "gluon"],
                       help="train through mx.mod.Module (Symbol) or the hybridized Gluon net")
    model.add_argument("--plain-graph", action="store_true",
                       help="train the network graph exactly as built; by default CPU training (not --memonger) "
                            "runs resnet_toolkit.fastpath.training_graph: BN+ReLU as one op, global pooling as a mean, "
                            "the same parameters and checkpoints; CIFAR training 1.1-1.3x faster with Module, 1.2-1.9x "
                            "with Gluon (bench/RESULTS.md)")
    return model


def add_fit_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    fit = parser.add_argument_group("Training")
    fit.add_argument("--gpus", type=str, default="", help="GPU ids, e.g. '0,1'; empty means CPU")
    fit.add_argument("--cpus", type=int, default=1,
                     help="number of CPU contexts the batch is split over (data parallelism without a GPU)")
    fit.add_argument("--kv-store", type=str, default="device", help="kvstore type: device, local, dist_sync, ...")
    fit.add_argument("--lr", type=float, default=None,
                     help=f"learning rate at the start of this run (default {DEFAULT_LR}; with --retrain: the rate the "
                          "checkpointed run would have used next)")
    fit.add_argument("--lr-steps", type=str, default=None,
                     help="epochs where the rate is multiplied by --lr-factor (default 120,160 CIFAR; 30,60,90 "
                          "ImageNet)")
    fit.add_argument("--lr-factor", type=float, default=0.1, help="rate multiplier at each --lr-steps epoch")
    fit.add_argument("--mom", type=float, default=0.9, help="momentum")
    fit.add_argument("--wd", type=float, default=0.0001, help="weight decay (on *_weight and *_gamma only)")
    fit.add_argument("--optimizer", type=str, default="nag", choices=["nag", "sgd"], help="optimizer")
    fit.add_argument("--batch-size", type=int, default=256, help="total batch size over all contexts")
    fit.add_argument("--end-epoch", type=int, default=None, help="train until this epoch (default 200 CIFAR, "
                                                                 "120 ImageNet)")
    fit.add_argument("--model-prefix", type=str, default=None,
                     help="checkpoint prefix (default model/resnet-{data_type}-{depth}-{rank})")
    fit.add_argument("--model-load-epoch", type=str, default=None,
                     help="with --retrain: checkpoint epoch to load; omitted, -1 or 'latest' = the newest")
    fit.add_argument("--retrain", action="store_true", help="continue from a checkpoint (params + optimizer state)")
    fit.add_argument("--frequent", type=int, default=50, help="log speed and metrics every N batches")
    fit.add_argument("--log-file", type=str, default=None, help="also write the log here (appended)")
    return fit


def add_config_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("Configuration")
    group.add_argument("--config", type=str, default=None,
                       help="JSON or YAML file of flag values ({'lr': 0.1, 'lr-mode': 'cosine', ...}, e.g. a "
                            "PREFIX-args.json that a run wrote); flags on the command line override it")
    return group


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default appended as ``(default: X)``, except where there is nothing to add: a
    default of None (the flag's help says what happens: the data type's value, the checkpoint's, none), an on/off
    flag (off), an empty string, or a help text that states its default itself ("(default ...", "..., default)")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.default in (None, "") or isinstance(action, argparse._StoreTrueAction)
                or re.search(r"\(default\b|\bdefault\)", text)):
            return text
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line (a :class:`UserError`), like every other bad input."""

    def error(self, message: str):
        raise UserError(f"{message} (see --help)")


def build_parser(prog: str = "train_resnet.py") -> argparse.ArgumentParser:
    parser = OneLineParser(prog=prog, description="Train a pre-activation ResNet (ResNet-v2) with MXNet",
                          formatter_class=HelpFormatter)
    add_data_args(parser)
    add_augmentation_args(parser)
    add_model_args(parser)
    add_network_args(parser)
    add_fit_args(parser)
    add_precision_args(parser)
    add_recipe_args(parser)
    add_distill_args(parser)
    add_finetune_args(parser)
    add_retention_args(parser)
    add_config_args(parser)
    return parser


@dataclass(frozen=True)
class RunConfig:
    """A run's flags after :func:`resolve_args`: every default filled in, every value checked. The library reads
    this, never the raw flags. Field names are the flags' (``--lr-mode`` -> ``lr_mode``); the last four are
    parsed once here. What follows from the flags on this machine and in this job (the kvstore, this worker's
    prefix and log file, the augmentation as trained, the spec, the devices, ...) is worked out once by
    :func:`resnet_toolkit.runplan.plan_run`; ``model_prefix`` and ``log_file`` stay as given.
    """

    # Data
    data_dir: str
    data_type: str
    train_rec: str | None
    val_rec: str | None
    image_shape: str | None
    list_dir: str
    num_examples: int | None
    num_classes: int
    preprocess_threads: int
    seed: int
    # Augmentation: None when not given; RunPlan.augmentation holds the values trained with (the flag, else a
    # retrain's saved value, else the data type's default: resnet_toolkit.data.resolve_augmentation)
    aug_level: int | None
    mirror: bool | None
    pad: int | None  # pixels
    # Model
    depth: int
    bn_mom: float
    workspace: int
    memonger: bool
    dtype: str
    precision_policy: str | None
    api: str
    plain_graph: bool
    # Network family
    network: str
    cardinality: int | None
    bottleneck_width: int | None
    # Training
    gpus: str
    cpus: int
    kv_store: str
    lr: float | None
    lr_steps: str | None
    lr_factor: float
    mom: float
    wd: float
    optimizer: str
    batch_size: int
    end_epoch: int
    model_prefix: str | None
    model_load_epoch: str | None
    retrain: bool
    frequent: int
    log_file: str | None
    # Recipe
    lr_mode: str
    warmup_epochs: float
    warmup_lr: float
    label_smoothing: float
    mixup: float
    mixup_off_epoch: int
    random_erasing: float
    random_erasing_fill: str
    no_wd: bool
    last_gamma: bool
    # Distillation
    teacher: list[str] | None
    hard_weight: float
    # Fine-tuning
    finetune: str | None
    freeze_stages: int
    lr_mult_body: float
    # Checkpoints and configuration
    keep_last: int
    save_best: bool
    config: str | None
    # Derived
    layout: DatasetLayout            # the data's files, image shape and network stem
    lr_step_epochs: tuple[int, ...]  # --lr-steps (or the data type's default) as epochs
    gpu_ids: tuple[int, ...]         # --gpus as ids
    num_contexts: int                # devices the batch is split over

    @property
    def data_shape(self) -> tuple[int, int, int, int]:
        """(batch, channels, height, width) of one training batch, all contexts together."""
        return (self.batch_size,) + tuple(self.layout.image_shape)


def resolve_args(args: argparse.Namespace) -> RunConfig:
    """Check every flag and fill in the data-type defaults; raises :class:`UserError` with one clear line.

    Returns the :class:`RunConfig`; ``--model-prefix`` is resolved later, once the kvstore rank is known
    (:func:`resnet_toolkit.runplan.worker_paths`).
    """
    from symbols.spec import get_spec

    if args.data_type == FOLDER and args.num_classes is None:
        synset = Path(args.data_dir) / SYNSET
        if not synset.is_file():
            raise UserError(f"--data-type folder needs --num-classes (or {synset}, one class per line)")
        args.num_classes = len(read_synset(synset))
    layout = data_layout(args)
    spec = get_spec(layout.net_type, args.depth, args.network, args.cardinality, args.bottleneck_width)
    args.cardinality, args.bottleneck_width = spec.cardinality, spec.bottleneck_width
    if args.num_classes is None:
        args.num_classes = layout.num_classes
    if args.num_classes < 2:
        raise UserError(f"--num-classes must be at least 2, got {args.num_classes}")
    if args.end_epoch is None:
        args.end_epoch = DEFAULT_END_EPOCH[layout.net_type]
    try:
        args.lr_step_epochs = (parse_steps(args.lr_steps) if args.lr_steps is not None
                               else DEFAULT_STEPS[layout.net_type])
    except ValueError as exc:
        raise UserError(str(exc).replace("invalid literal for int() with base 10", "not an integer")) from None
    if args.end_epoch < 1:
        raise UserError(f"--end-epoch must be at least 1, got {args.end_epoch}")
    for name in ("lr", "mom", "wd", "bn_mom", "lr_factor"):
        value = getattr(args, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if args.lr is not None and args.lr == 0:
        raise UserError("--lr must be positive, got 0")
    if args.mom >= 1 or args.bn_mom >= 1:
        raise UserError("--mom and --bn-mom must be below 1")
    if args.cpus < 1:
        raise UserError(f"--cpus must be at least 1, got {args.cpus}")
    if args.frequent < 1:
        raise UserError(f"--frequent must be at least 1, got {args.frequent}")
    if args.preprocess_threads < 1:
        raise UserError(f"--preprocess-threads must be at least 1, got {args.preprocess_threads}")
    if args.num_examples is not None and args.num_examples < 1:
        raise UserError(f"--num-examples must be positive, got {args.num_examples}")
    args.gpu_ids = parse_gpus(args.gpus)
    args.num_contexts = len(args.gpu_ids) or args.cpus
    check_dtype(args.dtype, len(args.gpu_ids), args.api, args.kv_store)
    if args.batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if args.batch_size % args.num_contexts:
        raise UserError(f"--batch-size {args.batch_size} is not divisible by the {args.num_contexts} contexts")
    if args.memonger and args.api == "gluon":
        raise UserError("--memonger plans a Symbol graph: it works with --api module only (Gluon's CachedOp "
                        "ignores mirroring)")
    check_augmentation_args(args, layout.image_shape)
    check_recipe_args(args)
    check_distill_args(args)
    check_finetune_args(args, len(spec.units))
    check_retention_args(args)
    if args.model_load_epoch is not None and str(args.model_load_epoch) != "latest":
        try:
            if int(args.model_load_epoch) < -1:
                raise ValueError
        except ValueError:
            raise UserError(f"--model-load-epoch must be an epoch number, -1 or 'latest', "
                            f"got {args.model_load_epoch!r}") from None
    args.layout = layout
    args.lr_step_epochs = tuple(args.lr_step_epochs)
    args.gpu_ids = tuple(args.gpu_ids)
    return RunConfig(**vars(args))


def uses_training_graph(cfg: RunConfig) -> bool:
    """Whether the run trains :func:`resnet_toolkit.fastpath.training_graph`'s rewrite of the network.

    CPU contexts only (its fused BN+ReLU is an MKLDNN operator), and not with ``--memonger`` (the plan marks the
    nodes of the graph it was made for).
    """
    return not (cfg.plain_graph or cfg.gpu_ids or cfg.memonger)


FOLDER = "folder"


def data_layout(args: argparse.Namespace):
    """The :class:`resnet_toolkit.data.DatasetLayout` of the flags: a known data type's, or for ``--data-type
    folder`` one made from ``--train-rec``, ``--val-rec``, ``--image-shape`` and ``--num-classes`` (images up to
    ``SMALL_INPUT_MAX`` (64) pixels high train like CIFAR: 3x3 stem, by default pad 4 + random crop + mirror;
    larger ones like ImageNet, by ``--aug-level``; ``--mirror``/``--no-mirror`` and ``--pad`` choose for either:
    :func:`symbols.spec.net_type_for_input`)."""
    from resnet_toolkit.data import DatasetLayout, get_layout
    from resnet_toolkit.model_facts import parse_image_shape
    from symbols.spec import net_type_for_input

    if args.data_type != FOLDER:
        if args.train_rec or args.val_rec or args.image_shape:
            raise UserError("--train-rec, --val-rec and --image-shape go with --data-type folder only")
        return get_layout(args.data_type)
    missing = [f for f, v in (("--train-rec", args.train_rec), ("--val-rec", args.val_rec),
                              ("--image-shape", args.image_shape)) if not v]
    if missing:
        raise UserError(f"--data-type folder needs {', '.join(missing)} (files made by tools/im2rec_wrapper.py "
                        f"list + pack)")
    shape = parse_image_shape(args.image_shape, min_size=8)
    net_type = net_type_for_input(shape)  # the stem; the folder trains like that data set (CIFAR-10: pad 4)
    return DatasetLayout(FOLDER, {1: args.train_rec}, args.val_rec, shape, args.num_classes or 0,
                         net_type, pad=get_layout(net_type).pad,
                         make_command="python tools/im2rec_wrapper.py list ROOT --out DATA_DIR --name NAME "
                                      "--train-ratio 0.9, then pack each .lst")


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """Parse and resolve ``train_resnet.py``'s flags; a ``--config FILE`` supplies values that flags override."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        from_file = config_argv(load_config(args.config), parser, args.config)
        try:
            parser.parse_args(from_file)  # alone first, so that a bad value in the file is blamed on the file
        except UserError as exc:
            raise UserError(f"--config {args.config}: {exc}") from None
        args = parser.parse_args(from_file + argv)
    return resolve_args(args)
