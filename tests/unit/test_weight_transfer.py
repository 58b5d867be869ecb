"""The pure parts of the collective weight transfer (the GPU path shares them): the transport chosen from the
config, the bucket plan, the metadata and update info the engines receive by, packing, and the gloo
sender and vLLM's receiving engine over a real gloo group in one process (no vLLM engine)."""

from __future__ import annotations

import threading

import pytest
import torch

from halo_ray.config import load_config
from halo_ray.errors import ConfigError
from halo_ray.learner import free_port
from halo_ray.placement import engine_backend, resolve_weight_transfer
from halo_ray.sections import GRPOJobConfig, ModelConfig, RaftJobConfig, RolloutConfig
from halo_ray.weight_transfer import (TensorMeta, WeightSender, bucket_plan, init_info, metadata_from_update_info,
                                      pack, tensor_metadata, unpack, update_info)


@pytest.mark.parametrize("rollout_gpus, learner_gpus, lora, expected", [
    (0, 0, False, "object_store"),   # CPUs: the object store is the default
    (1, 1, False, "nccl"),           # both on GPUs: NCCL
    (1, 0, False, "object_store"),   # a CPU learner cannot join an NCCL group
    (0, 1, False, "object_store"),
    (1, 1, True, "object_store"),    # LoRA adapters travel by ref
])
def test_auto_resolves_from_where_engines_and_learner_run(rollout_gpus, learner_gpus, lora, expected):
    assert resolve_weight_transfer("auto", rollout_gpus, learner_gpus, lora) == expected


def test_explicit_choices_are_kept_or_refused_with_the_key():
    assert resolve_weight_transfer("gloo", 0, 0, False) == "gloo"
    assert resolve_weight_transfer("object_store", 1, 1, False) == "object_store"
    assert resolve_weight_transfer("nccl", 1, 1, False) == "nccl"
    with pytest.raises(ConfigError, match=r"rollout.weight_transfer=nccl needs .*GPUs.*rollout.num_gpus=0"):
        resolve_weight_transfer("nccl", 0, 1, False)
    with pytest.raises(ConfigError, match=r"rollout.weight_transfer=gloo: a LoRA run .*adapter.*auto or object_store"):
        resolve_weight_transfer("gloo", 0, 0, True)
    with pytest.raises(ConfigError, match="not one of auto, object_store, nccl, gloo"):
        resolve_weight_transfer("shm", 0, 0, False)


def test_engines_are_built_with_the_backend_they_may_receive_by():
    assert engine_backend("auto", 0, False) is None  # CPU engines: object store unless asked
    assert engine_backend("auto", 1, False) == "nccl"
    assert engine_backend("gloo", 0, False) == "gloo"
    assert engine_backend("nccl", 1, True) is None and engine_backend("object_store", 1, False) is None


def test_engine_kwargs_pass_tensor_parallel_and_the_transfer_backend():
    from halo_ray.rollout import engine_kwargs

    model = ModelConfig(path="m")
    cpu = engine_kwargs(model, RolloutConfig())
    assert "weight_transfer_config" not in cpu and "tensor_parallel_size" not in cpu
    assert engine_kwargs(model, RolloutConfig(weight_transfer="gloo"))["weight_transfer_config"] == {"backend": "gloo"}
    gpu = engine_kwargs(model, RolloutConfig(num_gpus=1, tensor_parallel_size=2))
    assert gpu["weight_transfer_config"] == {"backend": "nccl"} and gpu["tensor_parallel_size"] == 2
    assert gpu["distributed_executor_backend"] == "mp"  # shards in the actor's own processes, on its GPUs


def test_job_configs_check_the_transfer_against_both_sides():
    with pytest.raises(ConfigError, match=r"rollout.weight_transfer=nccl needs"):
        load_config(RaftJobConfig, overrides=["rollout.weight_transfer=nccl"])
    with pytest.raises(ConfigError, match=r"a LoRA run"):
        load_config(GRPOJobConfig, overrides=["rollout.weight_transfer=gloo", "model.lora.enabled=true"])
    with pytest.raises(ConfigError, match=r"weight_transfer.*closest|auto, object_store, nccl, gloo"):
        load_config(RaftJobConfig, overrides=["rollout.weight_transfer=ncl"])
    assert load_config(RaftJobConfig, overrides=["rollout.weight_transfer=gloo"]).rollout.weight_transfer == "gloo"


def test_tensor_parallel_on_cpu_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"tensor_parallel_size=2 needs GPUs.*set it to 1, or rollout.num_gpus"):
        load_config(RaftJobConfig, overrides=["rollout.tensor_parallel_size=2"])
    assert load_config(RaftJobConfig, overrides=["rollout.tensor_parallel_size=2", "rollout.num_gpus=1",
                                            "learner.num_gpus_per_rank=1"]).rollout.tensor_parallel_size == 2


def _meta(*sizes_and_dtypes) -> list[TensorMeta]:
    return [TensorMeta(f"t{i}", dtype, (n,)) for i, (n, dtype) in enumerate(sizes_and_dtypes)]


def test_bucket_plan_packs_in_order_up_to_the_limit():
    meta = _meta((10, "float32"), (10, "float32"), (30, "float32"), (5, "bfloat16"), (100, "float32"))
    assert [m.nbytes for m in meta] == [40, 40, 120, 10, 400]
    assert bucket_plan(meta, 100) == [[0, 1], [2], [3], [4]]  # 120 and 400 exceed it: alone
    assert bucket_plan(meta, 130) == [[0, 1], [2, 3], [4]]
    assert bucket_plan(meta, 10_000) == [[0, 1, 2, 3, 4]]
    assert bucket_plan([], 100) == []
    with pytest.raises(ValueError, match="positive"):
        bucket_plan(meta, 0)


def test_metadata_travels_as_vllm_update_info_and_back():
    named = [("a.weight", torch.zeros(2, 3)), ("b.bias", torch.zeros(4, dtype=torch.bfloat16))]
    meta = tensor_metadata(named)
    assert meta == [TensorMeta("a.weight", "float32", (2, 3)), TensorMeta("b.bias", "bfloat16", (4,))]
    info = update_info(meta)
    assert info == {"names": ["a.weight", "b.bias"], "dtype_names": ["float32", "bfloat16"], "shapes": [[2, 3], [4]]}
    from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferUpdateInfo

    NCCLWeightTransferUpdateInfo(**info)  # the update info vLLM's NCCL engine parses: the same payload
    assert metadata_from_update_info(info) == meta


def test_pack_and_unpack_round_trip_mixed_dtypes():
    named = [("x", torch.arange(6, dtype=torch.float32).reshape(2, 3)), ("y", torch.tensor([1.5, -2.0], dtype=torch.bfloat16)),
             ("z", torch.arange(5, dtype=torch.int64)[1:])]  # a view with an offset
    flat = pack([t for _, t in named])
    assert flat.dtype == torch.uint8 and flat.numel() == sum(m.nbytes for m in tensor_metadata(named))
    back = unpack(flat, tensor_metadata(named))
    assert [n for n, _ in back] == ["x", "y", "z"]
    assert all(torch.equal(t, u) and t.dtype == u.dtype for (_, t), (_, u) in zip(named, back))


def test_init_info_places_the_sender_at_rank_0():
    gloo = init_info("gloo", "10.0.0.1", 1234, 4, 1 << 20)
    assert gloo == dict(master_address="10.0.0.1", master_port=1234, rank_offset=1, world_size=5,
                        packed_buffer_size_bytes=1 << 20)
    nccl = init_info("nccl", "10.0.0.1", 1234, 4, 1 << 20)
    from vllm.distributed.weight_transfer.nccl_common import NCCLWeightTransferInitInfo

    parsed = NCCLWeightTransferInitInfo(**nccl)  # what vLLM's NCCL engine parses
    assert (parsed.packed, parsed.packed_buffer_size_bytes, parsed.world_size) == (True, 1 << 20, 5)


class _Receiver:
    """Stands in for vLLM's model: records what ``load_weights`` was given."""

    def __init__(self):
        self.loaded = []

    def load_weights(self, weights):
        self.loaded += [(n, t.clone()) for n, t in weights]


def test_gloo_sender_and_vllm_engine_exchange_buckets_in_one_process():
    """Sender and the registered vLLM engine (``WeightTransferEngineFactory``) over a real gloo group."""
    from types import SimpleNamespace

    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory

    from halo_ray.weight_transfer import register_gloo_engine

    register_gloo_engine()
    register_gloo_engine()  # once per process: a second call is a no-op, not vLLM's "already registered"
    engine_cls = WeightTransferEngineFactory._registry["gloo"]()
    parallel = SimpleNamespace(data_parallel_index=0, world_size=1, rank=0)
    model = _Receiver()
    engine = engine_cls(SimpleNamespace(backend="gloo"), SimpleNamespace(parallel_config=parallel, model_config=None),
                        torch.device("cpu"), model)
    named = [(f"layer.{i}.weight", torch.randn(16, 8)) for i in range(5)] + [("norm", torch.ones(8, dtype=torch.bfloat16))]
    meta = tensor_metadata(named)
    port = free_port()
    senders = []
    opener = threading.Thread(target=lambda: senders.append(WeightSender("gloo", "127.0.0.1", port, 1, 1100)))
    opener.start()
    engine.init_transfer_engine(engine.parse_init_info(init_info("gloo", "127.0.0.1", port, 1, 1100)))
    opener.join()
    sent = []
    sending = threading.Thread(target=lambda: sent.append(senders[0].send(iter(named), meta)))
    sending.start()
    engine.receive_weights(engine.parse_update_info(update_info(meta)))
    sending.join()
    assert sent == [len(bucket_plan(meta, 1100))] == [3]  # 512-byte tensors, two a bucket, the norm with the last
    assert [n for n, _ in model.loaded] == [n for n, _ in named]
    assert all(torch.equal(t, u) for (_, t), (_, u) in zip(named, model.loaded))
    with pytest.raises(ValueError, match="not those the engines were told"):
        senders[0].send(iter(named[::-1]), meta)
    senders[0].close()
    engine.shutdown()


def test_a_colocated_run_ships_weights_by_ref_not_nccl():
    """Engine i and learner rank i share one GPU: NCCL cannot make them two ranks of one group."""
    from halo_ray.config import load_config
    from halo_ray.sections import GRPOJobConfig

    assert resolve_weight_transfer("auto", 0.5, 0.5, False, colocated=True) == "object_store"
    assert engine_backend("auto", 0.5, False, colocated=True) is None
    with pytest.raises(ConfigError, match=r"weight_transfer=nccl: cluster.colocate .* one GPU"):
        resolve_weight_transfer("nccl", 1, 1, False, colocated=True)
    gpus = ["rollout.num_gpus=1", "learner.num_gpus_per_rank=1", "cluster.colocate=true"]
    assert load_config(GRPOJobConfig, None, gpus).cluster.colocate  # auto: fine
    with pytest.raises(ConfigError, match=r"cluster.colocate puts engine i and learner rank i on one GPU"):
        load_config(GRPOJobConfig, None, gpus + ["rollout.weight_transfer=nccl"])
