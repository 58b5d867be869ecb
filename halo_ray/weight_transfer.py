"""Weight transfer over a collective: learner rank 0 broadcasts the full weights to every rollout engine.

The engine side is vLLM's native weight-transfer API: an engine built with ``weight_transfer_config``
holds a transfer engine in its worker, and ``LLM.init_weight_transfer_engine`` / ``start_weight_update``
/ ``update_weights`` / ``finish_weight_update`` join the group, receive and load the weights. Two
backends speak the same protocol (a rendezvous at ``master_address:master_port``, the sender at rank 0,
engine workers from ``rank_offset`` on; per update the parameters' names, dtypes and shapes; the bytes in
buckets of at most ``bucket_bytes``):

- ``nccl`` (GPUs): vLLM's ``NCCLWeightTransferEngine``, and on the sender vLLM's packed broadcast.
- ``gloo`` (CPUs): ``GlooWeightTransferEngine`` below, registered in vLLM's engine factory under
  ``gloo``: the buckets of ``bucket_plan`` travel as flat byte tensors over a gloo process group of their
  own (not torch.distributed's default group, which the learner's DeepSpeed ranks use).

Integration tests run the whole protocol with ``gloo``; the GPU path differs only in the communicator
and the bucketing function it calls (``WeightSender``). LoRA adapters keep the object-store path.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from halo_ray.placement import COLLECTIVES

if TYPE_CHECKING:
    import torch

GLOO = "gloo"
RENDEZVOUS_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class TensorMeta:
    """What an engine must know to receive one parameter: its HF name, dtype name and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        import torch

        n = 1
        for d in self.shape:
            n *= d
        return n * getattr(torch, self.dtype).itemsize


def tensor_metadata(named: Iterable[tuple[str, torch.Tensor]]) -> list[TensorMeta]:
    """The metadata of ``(name, tensor)`` pairs, in their order."""
    return [TensorMeta(name, str(t.dtype).removeprefix("torch."), tuple(t.shape)) for name, t in named]


def update_info(meta: list[TensorMeta]) -> dict[str, list]:
    """The per-update payload of vLLM's ``update_weights`` (both backends): names, dtype names, shapes."""
    return {"names": [m.name for m in meta], "dtype_names": [m.dtype for m in meta],
            "shapes": [list(m.shape) for m in meta]}


def metadata_from_update_info(info: dict[str, list]) -> list[TensorMeta]:
    return [TensorMeta(n, d, tuple(s)) for n, d, s in zip(info["names"], info["dtype_names"], info["shapes"])]


def bucket_plan(meta: list[TensorMeta], bucket_bytes: int) -> list[list[int]]:
    """Split parameters, in order, into buckets of at most ``bucket_bytes`` (a larger tensor travels alone).

    Returns:
        Lists of indices into ``meta``; concatenated they are ``0..len(meta)-1``.
    """
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    buckets: list[list[int]] = []
    size = 0
    for i, m in enumerate(meta):
        if buckets and size + m.nbytes <= bucket_bytes:
            buckets[-1].append(i)
            size += m.nbytes
        else:
            buckets.append([i])
            size = m.nbytes
    return buckets


def pack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Tensors as one flat uint8 tensor (on the first tensor's device), in order."""
    import torch

    return torch.cat([t.detach().contiguous().reshape(-1).view(torch.uint8) for t in tensors])


def unpack(flat: torch.Tensor, meta: list[TensorMeta]) -> list[tuple[str, torch.Tensor]]:
    """The inverse of ``pack``: views of ``flat`` as the named tensors of ``meta``."""
    import torch

    out = []
    for m, part in zip(meta, flat.split([m.nbytes for m in meta])):
        dtype = getattr(torch, m.dtype)
        if part.storage_offset() % dtype.itemsize:  # after a narrower dtype: realign (a copy) to view it
            part = part.clone()
        out.append((m.name, part.view(dtype).view(m.shape)))
    return out


def init_info(backend: str, master_address: str, master_port: int, num_engine_ranks: int,
              bucket_bytes: int) -> dict[str, Any]:
    """The payload of ``LLM.init_weight_transfer_engine`` for ``backend``: the sender is rank 0, the
    engines' workers ranks 1..``num_engine_ranks`` (each engine adds its own offset, ``rank_offset``)."""
    info = dict(master_address=master_address, master_port=master_port, rank_offset=1,
                world_size=num_engine_ranks + 1, packed_buffer_size_bytes=bucket_bytes)
    if backend == "nccl":
        info.update(packed=True, packed_num_buffers=2)
    return info


def gloo_group(master_address: str, master_port: int, rank: int, world_size: int, is_master: bool):
    """A gloo process group of its own (a TCP store at the sender), apart from torch.distributed's default."""
    import torch

    store = torch.distributed.TCPStore(master_address, master_port, world_size, is_master=is_master,
                                       timeout=RENDEZVOUS_TIMEOUT)
    store = torch.distributed.PrefixStore("halo-ray-weights", store)
    return torch.distributed.ProcessGroupGloo(store, rank, world_size, RENDEZVOUS_TIMEOUT)


class WeightSender:
    """The sender (learner rank 0): opens the group at ``master_address:master_port`` as rank 0 and
    broadcasts, bucketed, whatever ``send`` is given.

    Args:
        backend: ``gloo`` or ``nccl``.
        master_address, master_port: where the group meets (this process hosts the rendezvous).
        num_engine_ranks: the engines' workers (engines x tensor-parallel size).
        bucket_bytes: the largest bucket (``rollout.weight_bucket_mb``).
    """

    def __init__(self, backend: str, master_address: str, master_port: int, num_engine_ranks: int,
                 bucket_bytes: int):
        self.backend, self.bucket_bytes = backend, bucket_bytes
        world = num_engine_ranks + 1
        if backend == GLOO:
            self.group = gloo_group(master_address, master_port, 0, world, is_master=True)
        elif backend == "nccl":
            from vllm.distributed.weight_transfer.nccl_common import trainer_init

            self.group = trainer_init(dict(master_address=master_address, master_port=master_port, world_size=world))
        else:
            raise ValueError(f"no collective weight transfer over {backend!r} (one of {COLLECTIVES})")

    def send(self, named: Iterator[tuple[str, torch.Tensor]], meta: list[TensorMeta]) -> int:
        """Broadcast ``named`` (in ``meta``'s order, as the engines were told); returns the buckets sent."""
        if self.backend == "nccl":
            import torch
            from vllm.distributed.weight_transfer.packed_tensor import packed_nccl_broadcast_producer

            packed_nccl_broadcast_producer(iterator=named, group=self.group, src=0, post_iter_func=lambda kv: kv[1],
                                           buffer_size_bytes=self.bucket_bytes, num_buffers=2)
            torch.cuda.current_stream().synchronize()
            return -1  # vLLM's producer counts its own buffers
        pairs = list(named)
        if [m.name for m in meta] != [n for n, _ in pairs]:
            raise ValueError("the weights sent are not those the engines were told to expect (names or order differ)")
        plan = bucket_plan(meta, self.bucket_bytes)
        for bucket in plan:
            self.group.broadcast(pack([pairs[i][1].to("cpu") for i in bucket]), 0).wait()
        return len(plan)

    def close(self) -> None:
        if self.backend == "nccl" and self.group is not None:
            self.group.destroy()
        self.group = None


def register_gloo_engine() -> None:
    """Register ``GlooWeightTransferEngine`` in vLLM's engine factory under ``gloo`` (once per process)."""
    import torch
    from vllm.distributed.weight_transfer.base import WeightTransferEngine, WeightTransferInitInfo
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory
    from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferUpdateInfo

    if GLOO in WeightTransferEngineFactory._registry:
        return

    @dataclass
    class GlooInitInfo(WeightTransferInitInfo):
        master_address: str
        master_port: int
        rank_offset: int
        world_size: int
        packed_buffer_size_bytes: int

    class GlooWeightTransferEngine(WeightTransferEngine[GlooInitInfo, NCCLWeightTransferUpdateInfo]):
        """vLLM's transfer-engine protocol over gloo: init joins the group, the layerwise reload of
        start/finish is the NCCL engine's, each bucket arrives as one byte tensor and is loaded by name."""

        init_info_cls = GlooInitInfo
        update_info_cls = NCCLWeightTransferUpdateInfo

        def init_transfer_engine(self, info: GlooInitInfo) -> None:
            p = self.parallel_config
            rank = info.rank_offset + p.data_parallel_index * p.world_size + p.rank
            self.bucket_bytes = info.packed_buffer_size_bytes
            self.group = gloo_group(info.master_address, info.master_port, rank, info.world_size, is_master=False)

        def start_weight_update(self) -> None:
            from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

            initialize_layerwise_reload(self.model)

        def finish_weight_update(self) -> None:
            from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

            finalize_layerwise_reload(self.model, self.model_config)

        def receive_weights(self, update: NCCLWeightTransferUpdateInfo) -> None:
            meta = metadata_from_update_info(asdict(update))
            for bucket in bucket_plan(meta, self.bucket_bytes):
                parts = [meta[i] for i in bucket]
                flat = torch.empty(sum(m.nbytes for m in parts), dtype=torch.uint8)
                self.group.broadcast(flat, 0).wait()
                self.model.load_weights([(n, t.to(self.device)) for n, t in unpack(flat, parts)])

        def shutdown(self) -> None:
            self.group = None

    WeightTransferEngineFactory.register_engine(GLOO, GlooWeightTransferEngine)
