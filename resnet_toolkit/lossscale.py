"""Dynamic loss scaling for float16 training (``--dtype float16``, GPUs): float16 has 5 exponent bits, so small
gradients underflow unless the loss is scaled up before backward and the gradients scaled down after (MXNet
AMP's policy). bfloat16 has float32's exponent range and needs none of this."""
from __future__ import annotations

from typing import Sequence


class DynamicLossScaler:
    """Dynamic loss scaling for float16 training (MXNet AMP's ``LossScaler`` policy, for any engine and kvstore).

    Per step: back-propagate ``scale * loss`` (``autograd.backward(losses, head_grads=head_grads(losses))``); then
    :meth:`unscale_or_skip` over the gradient arrays: when every gradient is finite it divides them by the scale
    in place and returns True (apply the update); on an inf/NaN it returns False (skip this update) and halves the
    scale. After ``growth_interval`` clean steps in a row the scale doubles, up to ``max_scale``.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_interval: int = 2000, max_scale: float = 2.0 ** 24,
                 min_scale: float = 1.0):
        self.scale = float(init_scale)
        self.growth_interval = growth_interval
        self.max_scale = max_scale
        self.min_scale = min_scale
        self.clean_steps = 0
        self.skipped = 0

    def head_grads(self, losses: Sequence) -> list:
        """``autograd.backward(losses, head_grads=scaler.head_grads(losses))``: the gradient of each loss array
        set to the current scale (instead of 1), i.e. the backward pass of ``scale * loss``."""
        import mxnet as mx

        return [mx.nd.full(loss.shape, self.scale, ctx=loss.context, dtype=loss.dtype) for loss in losses]

    def update(self, overflow: bool) -> None:
        """Adjust the scale after a step: halve on ``overflow``, double after ``growth_interval`` clean steps."""
        if overflow:
            self.scale = max(self.min_scale, self.scale / 2)
            self.clean_steps = 0
            self.skipped += 1
            return
        self.clean_steps += 1
        if self.clean_steps >= self.growth_interval:
            self.scale = min(self.max_scale, self.scale * 2)
            self.clean_steps = 0

    def unscale_or_skip(self, grads: Sequence) -> bool:
        """True (gradients divided by the scale in place, apply the update) when all ``grads`` (NDArrays) are
        finite; False (skip the update) otherwise. Updates the scale either way."""
        import mxnet as mx

        grads = [g for g in grads if g is not None]
        if not grads:
            return True
        finite = mx.nd.ones((1,), ctx=grads[0].context)
        for start in range(0, len(grads), 200):  # multi_all_finite takes at most ~200 arrays per call
            chunk = grads[start:start + 200]
            mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk), init_output=False, out=finite)
        overflow = not bool(finite.asscalar())
        if not overflow:
            inv = 1.0 / self.scale
            for g in grads:
                g[:] *= inv
        self.update(overflow)
        return not overflow


def make_loss_scaler(dtype: str) -> DynamicLossScaler | None:
    """A :class:`DynamicLossScaler` for float16, None for float32 and bfloat16 (float32's exponent range)."""
    return DynamicLossScaler() if dtype == "float16" else None


def backward(losses: Sequence, scaler: DynamicLossScaler | None = None) -> None:
    """``autograd.backward(losses)``, of ``scale * loss`` when a ``scaler`` is given."""
    from mxnet import autograd

    if scaler is None:
        autograd.backward(list(losses))
    else:
        autograd.backward(list(losses), head_grads=scaler.head_grads(losses))


def gradients(params) -> list:
    """Every gradient array (all contexts) of the Gluon ``params`` (a list, or a ``ParameterDict``) that train."""
    params = params.values() if hasattr(params, "values") else params
    return [g for p in params if p.grad_req != "null" for g in p.list_grad()]


def ready_to_update(scaler: DynamicLossScaler | None, params) -> bool:
    """Before ``trainer.step``: True without a ``scaler``; with one, unscale the gradients of ``params`` in place
    and return True, or return False (skip this update) when any is inf/NaN (see :class:`DynamicLossScaler`)."""
    return True if scaler is None else scaler.unscale_or_skip(gradients(params))


# ------------------------------------------------------------------------------------------------ checkpoints
