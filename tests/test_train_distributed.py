"""Multi-process training: two gloo processes give the single-process gradient of the global batch.

Exact trace and a fixed-step integrator make the comparison deterministic: an
adaptive solver would choose its steps from the whole batch it sees, so half a
batch could take different steps than the full one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from flowkit.train import TrainConfig, Trainer
from flowkit.train.distributed import DistContext, launch

CONFIG: dict[str, Any] = {
    "n_train": 128,
    "n_val": 16,
    "n_test": 16,
    "batch_size": 32,
    "field_options": {"hidden": [16, 16]},
    "integrator": "rk4",
    "integrator_options": {"n_steps": 5},
    "trace": "exact",
    "gradient": "adjoint",
    "regularizers": {"kinetic_energy": 0.1, "jacobian_frobenius_exact": 0.1},
    "progress": False,
    "plots": False,
    "dtype": "float64",
    "threads": 1,
}


def _gradients(trainer: Trainer) -> list[torch.Tensor]:
    x = trainer.local_share(trainer.next_batch())
    trainer.optimizer.zero_grad()
    loss, _ = trainer.compute_loss(x)
    loss.backward()
    return [p.grad.detach().clone() for p in trainer.model.parameters()]


def _worker(ctx: DistContext, values: dict[str, Any], out: str) -> None:
    torch.set_default_dtype(torch.float64)
    trainer = Trainer(TrainConfig.from_dict(values), run_dir=out, context=ctx, write=False)
    grads = _gradients(trainer)
    trainer.optimizer.step()  # one update, then a validation split across the ranks
    val = trainer.evaluate(trainer.data.val)
    if ctx.rank == 0:
        torch.save(
            {"grads": grads, "val": val, "world": dist.get_world_size()}, Path(out) / "ddp.pt"
        )


def test_two_processes_match_one_on_the_same_global_batch(tmp_path: Path) -> None:
    # The single-process reference first: forked workers then inherit its imports.
    single = Trainer(TrainConfig(**CONFIG), run_dir=tmp_path / "single", write=False)
    grads = _gradients(single)
    single.optimizer.step()
    val = single.evaluate(single.data.val)

    values = {**CONFIG, "nproc": 2}
    launch(_worker, 2, (values, str(tmp_path)), backend="gloo", start_method="fork")
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    assert ddp["world"] == 2
    assert len(grads) == len(ddp["grads"])
    for g1, g2 in zip(grads, ddp["grads"], strict=True):
        assert torch.allclose(g1, g2, rtol=1e-10, atol=1e-13)
    assert val == pytest.approx(ddp["val"], rel=1e-10)


def test_launch_needs_two_processes() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        launch(_worker, 1)


def _raise_user_error(ctx: DistContext) -> None:
    from flowkit.errors import InvalidInputError

    if ctx.rank == 1:
        raise InvalidInputError("data.csv: 3 NaN values; remove them before training.")


def _raise_bug(ctx: DistContext) -> None:
    raise RuntimeError("a bug")


def test_a_worker_user_error_reaches_the_parent_as_a_user_error() -> None:
    """With --nproc 2 a bad data file was a worker traceback; now it is one FlowkitError."""
    import torch.multiprocessing as mp

    from flowkit.errors import FlowkitError
    from flowkit.train.distributed import WorkerError

    with pytest.raises(
        WorkerError,
        match=r"^data.csv: 3 NaN values; remove them before training. \(in worker process 1\)$",
    ):
        launch(_raise_user_error, 2, backend="gloo", start_method="fork")
    assert issubclass(WorkerError, FlowkitError)
    with pytest.raises(mp.ProcessRaisedException, match="a bug"):  # bugs keep the traceback
        launch(_raise_bug, 2, backend="gloo", start_method="fork")
