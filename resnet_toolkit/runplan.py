"""A training run worked out once: :func:`plan_run` turns the resolved flags (:class:`RunConfig`) into a
:class:`RunPlan` holding every fact the rest of the run reads, so that nothing after it derives one again.

The flags stay what the user typed, checked and with their defaults filled in (a plain, serialisable config,
``PREFIX-args.json``); the plan adds what follows from them on this machine and in this job: the kvstore and rank,
this worker's checkpoint prefix and log file, the augmentation as trained (a ``--retrain`` keeps its run's), the
network spec, the record files and epoch size, the devices and the batch each one sees, the batch a gradient is
averaged over, whether the fused training graph is bound, and what each batch trains against.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from resnet_toolkit.cluster import Cluster, make_cluster, make_contexts
from resnet_toolkit.data import DataPlan, plan_data, resolve_augmentation
from resnet_toolkit.distributed import rank_path
from resnet_toolkit.recipe import TargetRecipe
from resnet_toolkit.runfiles import config_path, network_flags, read_saved_config, saved_config
from resnet_toolkit.train_args import RunConfig, check_writable_dir, uses_training_graph
from resnet_toolkit.weights import check_same_network
from symbols.spec import ResNetSpec, get_spec


@dataclass(frozen=True)
class Augmentation:
    """What training batches go through (:func:`resnet_toolkit.data.train_aug`): ``--aug-level``, random
    horizontal flips, and the padding in pixels before a random crop."""

    level: int
    mirror: bool
    pad: int


@dataclass(frozen=True)
class RunPlan:
    """Everything a run derives from its flags, computed once by :func:`plan_run` before anything is written."""

    cfg: RunConfig                # the flags (model_prefix/log_file as given: see prefix/log_file)
    cluster: Cluster              # kvstore, this worker's rank, the worker count
    prefix: str                   # this worker's checkpoint prefix (the rank appended in a multi-worker job)
    log_file: str | None          # this worker's log file
    augmentation: Augmentation    # as trained; a retrain keeps its run's unless a flag changes it
    saved: dict | None            # the PREFIX-args.json of the run a --retrain continues
    spec: ResNetSpec              # the network
    data: DataPlan                # record files, images and updates per epoch
    contexts: tuple               # the devices the batch is split over
    batch_per_device: int         # images each device computes per update
    job_batch: int                # images whose summed gradient one update averages (every worker's with dist_sync)
    training_graph: bool          # bind resnet_toolkit.fastpath.training_graph's rewrite (CPU, not --memonger)
    targets: TargetRecipe         # what each batch trains against (labels, smoothing, mixup, teachers)

    def flags_as_trained(self) -> RunConfig:
        """The flags with this worker's prefix and log file and the augmentation as trained filled in: the first
        log line shows them and ``PREFIX-args.json`` saves them (a ``--config`` of that file repeats this run)."""
        aug = self.augmentation
        return dataclasses.replace(self.cfg, model_prefix=self.prefix, log_file=self.log_file, aug_level=aug.level,
                                   mirror=aug.mirror, pad=aug.pad)

    @property
    def data_shape(self) -> tuple[int, int, int, int]:
        """(batch, channels, height, width) of one training batch, all devices together."""
        return self.cfg.data_shape

    @property
    def device_shape(self) -> tuple[int, int, int, int]:
        """(batch, channels, height, width) of one device's share of a batch."""
        return (self.batch_per_device,) + tuple(self.cfg.layout.image_shape)

    @property
    def grad_scale(self) -> float:
        """The optimizer's ``rescale_grad``: the summed gradient of a batch becomes the mean over ``job_batch``."""
        return 1.0 / self.job_batch


def network_spec(cfg: RunConfig) -> ResNetSpec:
    """The :class:`symbols.spec.ResNetSpec` of the flags (``--network``, ``--depth``, the data's stem, and the
    family's cardinality and bottleneck width)."""
    return get_spec(cfg.layout.net_type, cfg.depth, cfg.network, cfg.cardinality, cfg.bottleneck_width)


def target_recipe(cfg: RunConfig) -> TargetRecipe:
    """What each batch trains against (``--label-smoothing``, ``--mixup``, ``--mixup-off-epoch``, ``--teacher``)."""
    return TargetRecipe(cfg.num_classes, cfg.label_smoothing, cfg.mixup, cfg.mixup_off_epoch, cfg.end_epoch,
                        cfg.seed, distilled=bool(cfg.teacher))


def default_prefix(cfg: RunConfig, spec: ResNetSpec, rank: int) -> str:
    """The original's checkpoint prefix ``model/resnet-{data_type}-{depth}-{rank}``; the other families put
    their name first: ``model/resnext50_32x4d-{data_type}-{rank}``, ``model/resnet20_v1-cifar10-0``."""
    if cfg.network == "resnet_v2":
        return os.path.join("model", f"resnet-{cfg.data_type}-{cfg.depth}-{rank}")
    return os.path.join("model", f"{spec.name.removeprefix('cifar_')}-{cfg.data_type}-{rank}")


def worker_paths(cfg: RunConfig, spec: ResNetSpec, cluster: Cluster) -> tuple[str, str | None]:
    """This worker's checkpoint prefix and log file: the default prefix ends in the rank; in a multi-worker job
    every rank writes its own files, also where workers share a machine or a folder. Both folders are created
    and checked writable here."""
    prefix, log_file = cfg.model_prefix or default_prefix(cfg, spec, cluster.rank), cfg.log_file
    if cluster.num_workers > 1:
        if cfg.model_prefix:
            prefix = f"{prefix}-{cluster.rank}"
        if log_file:
            log_file = rank_path(log_file, cluster.rank, cluster.num_workers)
    check_writable_dir(Path(prefix).parent, "checkpoint (--model-prefix)")
    if log_file:
        check_writable_dir(Path(log_file).parent, "--log-file")
    return prefix, log_file


def retrained_config(cfg: RunConfig, prefix: str) -> dict | None:
    """The ``PREFIX-args.json`` of the run a ``--retrain`` continues (None: not a retrain, or no readable file).
    A retrain whose flags build another network than that file names (depth, family, cardinality, width,
    classes, image shape) is refused here, before anything is written."""
    saved = read_saved_config(prefix, cfg.retrain)
    if saved is not None:
        check_same_network(network_flags(saved), network_flags(saved_config(cfg)), config_path(prefix), prefix)
    return saved


def plan_run(cfg: RunConfig, cluster: Cluster | None = None) -> RunPlan:
    """The :class:`RunPlan` of ``cfg`` (from :func:`resnet_toolkit.train_args.resolve_args`): creates the kvstore
    (unless ``cluster`` is given), checks the record files and the output folders. Raises :class:`UserError`."""
    cluster = cluster or make_cluster(cfg.kv_store, cfg.num_contexts)
    spec = network_spec(cfg)
    prefix, log_file = worker_paths(cfg, spec, cluster)
    saved = retrained_config(cfg, prefix)
    augmentation = Augmentation(*resolve_augmentation(cfg.layout, cfg.aug_level, cfg.mirror, cfg.pad, saved))
    data = plan_data(cfg.layout, cfg.data_dir, augmentation.level, cfg.batch_size, cluster.num_workers,
                     cfg.num_examples)
    # dist_sync sums the gradients of every worker's batch before one update; other kvstores update per worker.
    sync_workers = cluster.num_workers if cluster.kv is not None and "_sync" in cluster.kv.type else 1
    return RunPlan(cfg=cfg, cluster=cluster, prefix=prefix, log_file=log_file, augmentation=augmentation,
                   saved=saved, spec=spec, data=data, contexts=tuple(make_contexts(list(cfg.gpu_ids), cfg.cpus)),
                   batch_per_device=cfg.batch_size // cfg.num_contexts, job_batch=cfg.batch_size * sync_workers,
                   training_graph=uses_training_graph(cfg), targets=target_recipe(cfg))

