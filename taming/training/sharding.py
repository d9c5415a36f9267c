"""`--strategy fsdp`: fully sharded data parallel through FSDP2 (`fully_shard`), on GPUs and CPUs.

Lightning 2 offers FSDP twice. `FSDPStrategy` wraps the FSDP1 class, which refuses to run without
an accelerator, so it could never be tested on a CPU machine. `ModelParallelStrategy` drives the
FSDP2 API on any device (NCCL on GPUs, gloo on CPUs): the strategy builds a device mesh and the
LightningModule shards itself in `configure_model`. We use the latter, with every process in the
data-parallel dimension (tensor parallel size 1), so `--strategy fsdp` means the same thing on one
CPU laptop with `--devices 2` as on many GPU nodes.

Each shell's `configure_model` names its shard units (the VQGAN: encoder, decoder, discriminator;
the transformer: each GPT block); the root module is sharded last and owns whatever parameters remain. Frozen stages (the transformer's first stage and cond stage)
are not sharded: they carry no gradients and every rank needs them whole for its own batches.
Checkpoints are written whole by rank 0 (`save_distributed_checkpoint=False`), so a run trained
with FSDP resumes, samples and exports like any other.
"""
from __future__ import annotations

from typing import Iterable

from lightning.pytorch.strategies import ModelParallelStrategy
from torch import nn


class FSDPDataParallel(ModelParallelStrategy):
    """ModelParallelStrategy with all processes of all nodes sharding one data-parallel dimension."""

    strategy_name = "taming_fsdp"

    def __init__(self) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, save_distributed_checkpoint=False)

    def setup_environment(self) -> None:
        # the world size is known only once the trainer has assigned devices and nodes
        self._data_parallel_size = self.num_processes * self.num_nodes
        super().setup_environment()


def shard(root: nn.Module, units: Iterable[nn.Module], mesh, keep_gathered: Iterable[nn.Module] = ()) -> None:
    """fully_shard every unit, then the root (it owns the remaining parameters). Idempotent: the
    trainer calls configure_model again for validation and test.

    Units in `keep_gathered` stay gathered from their forward until their backward
    (reshard_after_forward=False): their parameters are then the very tensors the forward used,
    which a loss can differentiate against (the VQGAN's adaptive weight takes the gradient of the
    decoder's last layer); once resharded they would be new tensors outside the graph."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    if isinstance(root, FSDPModule):
        return
    keep = {id(m) for m in keep_gathered}
    for unit in units:
        fully_shard(unit, mesh=mesh, reshard_after_forward=id(unit) not in keep)
    fully_shard(root, mesh=mesh)


def data_parallel_mesh(module) -> object | None:
    """The data-parallel mesh of a LightningModule run by FSDPDataParallel, else None."""
    mesh = getattr(module, "_device_mesh", None)
    return None if mesh is None else mesh["data_parallel"]
