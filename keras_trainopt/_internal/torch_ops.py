"""PyTorch-only fast paths for work done on every update, in one place.

On the PyTorch backend Keras runs the train step eagerly: every `keras.ops`
call is one kernel launch with its own temporary, behind a few layers of
Python. Work that touches every weight at every update (a running average,
an update measurement) then costs several launches per weight and per step.
`torch._foreach_*` does the same arithmetic over a list of tensors in one
call, in place where it can; Keras uses it the same way for its own
optimizers (`keras/src/backend/torch/optimizers`). Callers pass the tensors
of Keras variables (`variable.value`) and reach this module only through
`_internal.backend.torch_ops()`, which returns it on the PyTorch backend.
"""

import torch


@torch.no_grad()
def all_finite(tensors):
    """Whether every element of every tensor is finite (a host read).

    One sum over all elements is finite exactly when each element is (NaN
    and inf propagate), barring float32 overflow of values beyond ~1e32,
    which counts as diverged too; the same rule as on the other backends.
    A sum is the cheapest reduction on the CPU: `_foreach_norm` with
    `ord=inf` is 20 times slower there.
    """
    total = torch.stack([t.sum(dtype=torch.float32) for t in tensors]).sum()
    return bool(torch.isfinite(total))


@torch.no_grad()
def lerp_(targets, ends, weight):
    """`target += weight * (end - target)` for each pair, in place."""
    torch._foreach_lerp_(targets, ends, float(weight))


@torch.no_grad()
def copies(tensors):
    """Copies of `tensors`, made in one call."""
    return torch._foreach_mul(tensors, 1.0)


@torch.no_grad()
def relative_changes(before, after):
    """`||after - before|| / ||before||` for each pair, as one vector."""
    changes = torch._foreach_norm(torch._foreach_sub(after, before))
    sizes = torch._foreach_norm(before)
    return torch.stack([c.float() for c in changes]) / torch.stack(
        [s.float() for s in sizes]
    )


@torch.no_grad()
def write_row(buffers, row, values):
    """`buffer[row] = value` for each pair, in place, without a host read
    (a value may be a device tensor, a list of them, or a number)."""
    for buffer, value in zip(buffers, values, strict=True):
        if isinstance(value, (list, tuple)):
            value = torch.stack([torch.as_tensor(v) for v in value])
        buffer[row] = value


@torch.no_grad()
def write_items(tensor, indices, values):
    """`tensor[i] = value` for each pair of numbers, in place (no host read,
    no copy from the host)."""
    for index, value in zip(indices, values, strict=True):
        tensor[index] = value


@torch.no_grad()
def add_(tensor, value):
    """`tensor += value`, in place."""
    tensor.add_(value)
