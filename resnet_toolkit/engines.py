"""The two training engines behind one interface: ``mx.mod.Module`` over the Symbol (as the original trained) and
the hybridized Gluon net with ``gluon.Trainer``.

Both take the same starting parameters, optimizer and :class:`TrainSetup`, and offer
``forward_backward(data, targets) -> loss``, ``update(metric, labels)``, ``predict(batch) -> probabilities``,
``get_params()`` and ``get_states()/set_states()`` (optimizer state by parameter name, for exact resume).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from resnet_toolkit.cluster import Cluster
from resnet_toolkit.errors import UserError
from resnet_toolkit.recipe import is_decayed, soft_cross_entropy


@dataclass
class TrainSetup:
    """What both engines apply beyond the optimizer's own arguments (:mod:`resnet_toolkit.recipe`,
    :mod:`resnet_toolkit.precision`): whether targets are distributions over ``num_classes``, weight-decay and
    learning-rate multipliers by parameter name, the names of frozen (untrained) parameters, the compute
    ``dtype`` (weights and checkpoints stay float32) and which ops run in it (``policy``, see
    :mod:`resnet_toolkit.precision`)."""

    num_classes: int = 0
    soft: bool = False
    wd_mult: dict = field(default_factory=dict)
    lr_mult: dict = field(default_factory=dict)
    frozen: list = field(default_factory=list)
    dtype: str = "float32"
    policy: str = "fp32-bn"


def _optimizer(name: str, optimizer_params: dict, param_names, wd_mult: dict, lr_mult: dict):
    """The MXNet optimizer with ``wd_mult`` / ``lr_mult`` set explicitly for every parameter name (built here, not
    by Module from a string, so the servers of a dist kvstore receive the multipliers too)."""
    import mxnet as mx

    optimizer = mx.optimizer.create(name, **optimizer_params)
    optimizer.wd_mult = {n: wd_mult.get(n, 1.0 if is_decayed(n) else 0.0) for n in param_names}
    optimizer.lr_mult = {n: lr_mult.get(n, 1.0) for n in param_names}
    return optimizer


class ModuleEngine:
    """``mx.mod.Module`` over the Symbol, as the original trained (there through FeedForward).

    With ``training_graph`` the Module binds :func:`resnet_toolkit.fastpath.training_graph` of ``sym``: the same
    parameters and outputs (tests/test_fastpath.py), a faster backward pass on CPU. Checkpoints still hold ``sym``.
    """

    def __init__(self, sym, contexts, cluster: Cluster, data_shape, arg_params, aux_params, optimizer: str,
                 optimizer_params: dict, training_graph: bool = False, recipe: TrainSetup | None = None):
        import mxnet as mx

        from resnet_toolkit.precision import mixed_precision_symbol

        recipe = recipe or TrainSetup()
        if training_graph:
            from resnet_toolkit import fastpath

            sym, _ = fastpath.training_graph(sym)
        # last: a graph rewrite after it would drop the casts
        sym = mixed_precision_symbol(sym, recipe.dtype, policy=recipe.policy)
        # Soft targets (label smoothing, mixup): SoftmaxOutput takes a label of the output's shape as a
        # distribution, its gradient is then probs - targets.
        label_shape = (data_shape[0], recipe.num_classes) if recipe.soft else data_shape[:1]
        self.mod = mx.mod.Module(sym, context=contexts, fixed_param_names=recipe.frozen or None)
        self.mod.bind(data_shapes=[("data", data_shape)], label_shapes=[("softmax_label", label_shape)])
        self.mod.init_params(arg_params=arg_params, aux_params=aux_params, allow_missing=False, force_init=True)
        names = self.mod._exec_group.param_names
        self.mod.init_optimizer(kvstore=cluster.kv, optimizer=_optimizer(optimizer, optimizer_params, names,
                                                                         recipe.wd_mult, recipe.lr_mult))
        self.loss = math.nan

    @property
    def optimizer(self):
        return self.mod._optimizer

    def forward_backward(self, data, targets) -> float:
        """One forward and backward pass; ``targets`` are labels (N,) or distributions (N, K). Returns the mean
        cross-entropy (nats)."""
        import mxnet as mx

        self.mod.forward_backward(mx.io.DataBatch(data=[data], label=[targets]))
        probs = self.mod.get_outputs()[0].asnumpy()
        self.loss = soft_cross_entropy(probs, targets.asnumpy())
        return self.loss

    def update(self, metric, labels) -> None:
        """Apply the gradients of the last pass; ``metric`` against the batch's (unmixed) ``labels``."""
        self.mod.update()
        self.mod.update_metric(metric, [labels])

    def predict(self, batch) -> np.ndarray:
        import mxnet as mx

        self.mod.forward(mx.io.DataBatch(data=batch.data), is_train=False)  # no label: it may be bound (N, K)
        return self.mod.get_outputs()[0].asnumpy()

    def get_params(self) -> tuple[dict, dict]:
        import mxnet as mx

        # BatchNorm writes its running statistics in backward outside the engine's dependency tracking: without
        # this wait, get_params copies them before the last batch's update (measured: bn1 mean off by ~0.2), and
        # the checkpoint scores differently from the model validated in memory.
        mx.nd.waitall()
        return self.mod.get_params()

    def _slots(self) -> list[tuple[Any, dict]]:
        """(updater, {param name: the updater's key}) for every updater holding optimizer state."""
        mod = self.mod
        names = mod._exec_group.param_names
        if mod._update_on_kvstore:
            updater = getattr(mod._kvstore, "_updater", None)
            return [(updater, {n: n for n in names})] if updater is not None else []
        ndev = len(mod._context)
        return [(mod._updater, {n: i * ndev + k for i, n in enumerate(names)}) for k in range(ndev)]

    def get_states(self) -> dict:
        return _read_states(self._slots())

    def set_states(self, states: dict) -> None:
        _write_states(self._slots(), states)


class GluonEngine:
    """``net`` (the Gluon net from the same spec as the Symbol, uninitialised) hybridized, with ``gluon.Trainer``
    on the same kvstore; parameters in and out under the Symbol's names, so the checkpoint files are the same.

    With ``training_graph`` batches run through :func:`resnet_toolkit.fastpath.hybridize_for_training`'s block,
    which shares the net's Parameters (the Trainer and the checkpoints see the same arrays).
    """

    def __init__(self, net, contexts, cluster: Cluster, data_shape, arg_params, aux_params, optimizer: str,
                 optimizer_params: dict, training_graph: bool = False, recipe: TrainSetup | None = None):
        import mxnet as mx
        from mxnet import gluon

        from resnet_toolkit.lossscale import make_loss_scaler
        from resnet_toolkit.precision import mixed_precision_block
        from symbols.gluon_resnet_v2 import load_symbol_params

        self.contexts = contexts
        self.net = net
        load_symbol_params(self.net, arg_params, aux_params, ctx=contexts)
        recipe = recipe or TrainSetup()
        for name, param in self.net.collect_params().items():
            # Gluon's Trainer decays every parameter by default: set the Symbol optimizer's multipliers explicitly.
            param.wd_mult = recipe.wd_mult.get(name, 1.0 if is_decayed(name) else 0.0)
            param.lr_mult = recipe.lr_mult.get(name, 1.0)
            if name in recipe.frozen:
                param.grad_req = "null"
        per_context = (data_shape[0] // len(contexts),) + tuple(data_shape[1:])
        self.block = mixed_precision_block(self.net, per_context, recipe.dtype, training_graph, recipe.policy)
        self.scaler = make_loss_scaler(recipe.dtype)  # float16 only
        if cluster.kv is not None and "async" in cluster.kv.type:
            raise UserError(f"--api gluon cannot train with --kv-store {cluster.kv.type} (Gluon's Trainer keeps "
                            f"the optimizer on the workers); use --api module")
        # With a dist kvstore the servers run the optimizer and every worker pulls the weights, as the Module path
        # does. (Updating on the workers from pulled gradients was measured to leave the two workers of a
        # dist_sync job with different weights in about half the runs.)
        distributed = cluster.kv is not None and "dist" in cluster.kv.type
        # Every parameter goes to the Trainer (it skips those with grad_req 'null': BN statistics, frozen ones);
        # a dist kvstore keys them by their index in this list on every worker.
        # The gradient scale is the optimizer's rescale_grad, as Module's (the run plan's 1 / job batch):
        # step(1) keeps it, so the servers of a dist kvstore, which get the optimizer once, hold the same.
        self.trainer = gluon.Trainer(self.net.collect_params(), optimizer, optimizer_params, kvstore=cluster.kv,
                                     update_on_kvstore=distributed)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=not recipe.soft)
        self.batch_size = data_shape[0]
        if distributed:
            _init_dist_trainer(self.trainer, contexts[0])
        self._pending = None
        self._mx = mx

    @property
    def optimizer(self):
        return self.trainer._optimizer

    def forward_backward(self, data, targets) -> float:
        """As :meth:`ModuleEngine.forward_backward`."""
        from mxnet import autograd
        from mxnet.gluon.utils import split_and_load

        from resnet_toolkit.lossscale import backward

        parts = split_and_load(data, self.contexts, even_split=True)
        target_parts = split_and_load(targets, self.contexts, even_split=True)
        with autograd.record():
            outputs = [self.block(x) for x in parts]
            losses = [self.loss_fn(o, y) for o, y in zip(outputs, target_parts)]
        backward(losses, self.scaler)
        self._pending = outputs
        total = sum(float(loss.sum().asscalar()) for loss in losses)
        return total / self.batch_size

    def update(self, metric, labels) -> None:
        """As :meth:`ModuleEngine.update`."""
        from mxnet.gluon.utils import split_and_load

        from resnet_toolkit.lossscale import ready_to_update

        outputs = self._pending
        if ready_to_update(self.scaler, self.trainer._params):  # a float16 overflow skips the step
            self.trainer.step(1)  # the scale is rescale_grad's (see __init__)
        metric.update(split_and_load(labels, self.contexts, even_split=True),
                      [self._mx.nd.softmax(o) for o in outputs])

    def predict(self, batch) -> np.ndarray:
        from mxnet.gluon.utils import split_and_load

        parts = split_and_load(batch.data[0], self.contexts, even_split=True)
        return np.concatenate([self._mx.nd.softmax(self.block(x)).asnumpy() for x in parts])

    def get_params(self) -> tuple[dict, dict]:
        from symbols.gluon_resnet_v2 import symbol_params

        return symbol_params(self.net)

    def _slots(self) -> list[tuple[Any, dict]]:
        from symbols.gluon_resnet_v2 import symbol_name

        keys = {symbol_name(p.name): i for i, p in enumerate(self.trainer._params)}
        return [(updater, keys) for updater in self.trainer._updaters]

    def get_states(self) -> dict:
        return _read_states(self._slots())

    def set_states(self, states: dict) -> None:
        _write_states(self._slots(), states)


def _init_dist_trainer(trainer, context) -> None:
    """Put the Trainer's parameters on the servers of a dist kvstore, the way its lazy first ``step`` would, but
    without its race.

    Gluon's Trainer ``broadcast``s each key: rank 0 schedules the push of its value, all workers meet at a barrier,
    then each pulls. On CPU the push is an engine operation that may not even have been sent when the barrier
    returns, and a worker's pull then reaches the server first: it aborts with 'init N first' (seen in about half
    the runs of tests/test_dist.py on a loaded 2-core machine). Here rank 0 waits for its pushes to complete before
    the barrier that releases the pulls. Uses the Trainer's private ``_init_kvstore``/``_params_to_init`` (MXNet
    1.9.1, the last release).
    """
    import mxnet as mx

    trainer._init_kvstore()  # creates the kvstore link and sends the optimizer to the servers
    kv = trainer._kvstore
    keys = list(range(len(trainer._params)))
    # Plain copies: a weight a forward pass has used may be held in an MKLDNN layout, which a kvstore cannot send.
    kv.init(keys, [mx.nd.array(param.data(context).asnumpy(), dtype=param.dtype) for param in trainer._params])
    mx.nd.waitall()  # rank 0: every init push has reached the servers
    kv._barrier()
    for key, param in zip(keys, trainer._params):
        kv.pull(key, param.list_data(), priority=-key)
    mx.nd.waitall()
    trainer._params_to_init = []


def _read_states(slots) -> dict:
    """``{'state:NAME': NDArray}`` from the first updater (every device's updater holds the same state)."""
    import mxnet as mx

    if not slots:
        return {}
    updater, keys = slots[0]
    out = {}
    for name, key in keys.items():
        state = updater.states.get(key)
        if state is None:
            continue
        if not hasattr(state, "copyto"):
            raise NotImplementedError(f"optimizer state of {name} is a {type(state).__name__}, not an NDArray")
        out[f"state:{name}"] = state.copyto(mx.cpu())
    return out


def _write_states(slots, states: dict) -> None:
    for updater, keys in slots:
        for name, key in keys.items():
            value = states.get(f"state:{name}")
            if value is None:
                continue
            updater.states[key] = value.copy()
            updater.states_synced[key] = False

