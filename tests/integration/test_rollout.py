"""RolloutActor and the driver on a real local Ray cluster with vLLM (CPU) and the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from halo_ray.sections import ModelConfig, RolloutConfig

HALO_RAY = str(Path(sys.executable).with_name("halo-ray"))  # the console script a user runs
PROMPTS = [{"prompt_id": f"p{i}", "prompt": f"def f{i}(x):\n    return x"} for i in range(6)]


@pytest.fixture(scope="module")
def group(ray_session, tiny_model):
    from halo_ray import driver

    g = driver.RolloutGroup(ModelConfig(path=tiny_model, max_model_len=256),
                            RolloutConfig(num_engines=2, num_cpus=1, kv_cache_gib=1, max_new_tokens=12))
    yield g
    g.shutdown()


def test_n_samples_per_prompt_with_logprobs_from_one_engine(group):
    table = group.generate(PROMPTS, n=3, temperature=1.0, seed=7)
    rows = table.to_pylist()
    assert len(rows) == 3 * len(PROMPTS)
    for pid in (p["prompt_id"] for p in PROMPTS):
        mine = [r for r in rows if r["prompt_id"] == pid]
        assert sorted(r["sample_index"] for r in mine) == [0, 1, 2]
        assert len({r["engine"] for r in mine}) == 1, "all samples of a prompt come from one engine"
    assert {r["engine"] for r in rows} == {0, 1}, "two actors share the batch"
    for r in rows:
        assert len(r["token_ids"]) == len(r["logprobs"]) > 0
        assert all(lp <= 0.0 for lp in r["logprobs"])
        assert r["policy_version"] == 0 and r["prompt_token_ids"]
    again = group.generate(list(reversed(PROMPTS)), n=3, temperature=1.0, seed=7).to_pylist()
    assert [r["completion"] for r in again] == [r["completion"] for r in rows], "seeded per prompt"


def test_text_decoded_once_at_the_end_equals_vllms_own_detokeniser(group):
    # Without stop strings the engine turns vLLM's per-step detokeniser off and decodes each completion
    # once; a stop string that never occurs turns it back on. Same seeds: same tokens, and the same text.
    own = group.generate(PROMPTS, n=3, temperature=1.0, seed=11).to_pylist()
    vllm = group.generate(PROMPTS, n=3, temperature=1.0, seed=11, stop=["\x00never"]).to_pylist()
    assert [r["token_ids"] for r in own] == [r["token_ids"] for r in vllm]
    assert [r["completion"] for r in own] == [r["completion"] for r in vllm]
    assert sum(len(r["completion"]) for r in own) > 0


def test_sleeping_engines_run_no_step_keep_their_requests_and_take_weights(group, tiny_model):
    """The colocated mode's mechanism (``cluster.colocate``): asleep, an engine runs no step (on CPU vLLM
    only pauses its scheduler; on a GPU it also frees the memory); requests in flight when it fell asleep
    stay and finish after the wake, and weights sent meanwhile are in before they go on."""
    import time

    import ray
    from safetensors.torch import load_file

    prompts = [{"prompt_id": f"s{i}", "prompt": f"def g{i}(x):\n"} for i in range(4)]
    refs = group.submit(prompts, n=4, temperature=1.0, max_tokens=48, seed=3)  # one call per engine
    deadline = time.monotonic() + 60
    while min(s["steps"] for s in group.stats()) < 2:  # every engine is under way
        assert time.monotonic() < deadline, "the engines never started"
        time.sleep(0.05)
    group.sleep()
    asleep = group.stats()
    time.sleep(1.0)  # long enough for dozens of steps of the tiny model
    assert [s["steps"] for s in group.stats()] == [s["steps"] for s in asleep], "an engine stepped while asleep"
    assert all(s["asleep"] for s in asleep)
    assert ray.wait(refs, num_returns=len(refs), timeout=0)[0] == [], "the requests finished before the sleep"
    group.update_weights(load_file(f"{tiny_model}/model.safetensors"), 1)  # the same weights, as version 1
    group.wake_up()
    rows = [r for t in ray.get(refs, timeout=120) for r in t.to_pylist()]
    assert len(rows) == 16 and all(r["token_ids"] for r in rows)
    assert {r["policy_version"] for r in rows} == {0} and {r["policy_version_last"] for r in rows} == {1}
    for s in group.stats():
        assert (s["sleeps"], s["steps_while_asleep"], s["asleep"], s["version"]) == (1, 0, False, 1)
        assert s["asleep_s"] >= 1.0


def test_weight_update_changes_greedy_output_and_version(ray_session, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from halo_ray import driver

    g = driver.RolloutGroup(ModelConfig(path=tiny_model, max_model_len=256),
                            RolloutConfig(num_engines=1, num_cpus=1, kv_cache_gib=1, max_new_tokens=24,
                                          max_num_seqs=64))
    try:
        before = g.generate(PROMPTS[:2], n=1, temperature=0.0).to_pylist()
        torch.manual_seed(0)
        state = {k: v + 0.3 * torch.randn_like(v) for k, v in AutoModelForCausalLM.from_pretrained(tiny_model).state_dict().items()}
        # Requests in flight while the weights change: paused between steps, not lost. Four generate
        # calls fill the actor's four generate threads; the update has its own thread (the control
        # concurrency group) and lands between engine steps, while every one of the four is unfinished.
        in_flight = g.submit(PROMPTS * 4, chunk_size=len(PROMPTS), n=4, temperature=1.0, max_tokens=48)
        g.update_weights(state, 1)
        import ray

        calls = [ray.get(ref).to_pylist() for ref in in_flight]
        assert [len(c) for c in calls] == [4 * len(PROMPTS)] * 4
        assert {r["policy_version"] for c in calls for r in c} <= {0, 1}
        assert all(any(r["policy_version_last"] == 1 for r in c) for c in calls), \
            "the update waited for a generate call to finish instead of landing between engine steps"
        after = g.generate(PROMPTS[:2], n=1, temperature=0.0).to_pylist()
        assert [r["policy_version"] for r in after] == [1, 1]
        assert [r["completion"] for r in after] != [r["completion"] for r in before]
        assert [s["version"] for s in g.stats()] == [1]
        with pytest.raises(Exception, match="not newer"):
            g.update_weights(state, 1)
    finally:
        g.shutdown()


def test_generate_command_joins_the_cluster(ray_session, tiny_model, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "prompt": "def add(a, b):"}\n{"prompt": "def sub(a, b):"}\n')
    out = tmp_path / "samples.parquet"
    env = dict(os.environ, RAY_ADDRESS=ray_session.get_runtime_context().gcs_address)
    cmd = [HALO_RAY, "generate", "--model", tiny_model, "--prompts", str(prompts),
           "--n", "2", "--max-new-tokens", "8", "--output", str(out), "--set", "rollout.kv_cache_gib=1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    assert sorted((r["prompt_id"], r["sample_index"]) for r in rows) == [("a", 0), ("a", 1), ("line2", 0), ("line2", 1)]
    assert "wrote 4 samples for 2 prompts" in done.stdout


def test_generate_command_rejects_bad_input(tmp_path, tiny_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{not json\n')
    cmd = [HALO_RAY, "generate", "--model", tiny_model, "--prompts", str(bad),
           "--output", str(tmp_path / "o.jsonl"), "--set", "rollout.samples_per_promt=2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "rollout.samples_per_promt: unknown key; did you mean 'rollout.samples_per_prompt'" in done.stderr
    cmd[-1] = "rollout.samples_per_prompt=2"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"{bad}:2: invalid JSON" in done.stderr
    missing = subprocess.run(cmd[:3] + [str(tmp_path / "nomodel")] + cmd[4:], capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "not a Hugging Face model directory" in missing.stderr
    assert not (tmp_path / "o.jsonl").exists()


def _teacher_forced(base_path: str, adapter, rows: list[dict]):
    """Per row: (log-probs of the sampled tokens, gap between the best token and the sampled one)
    under transformers, with ``adapter`` (None: the base alone) loaded the way vLLM loads it (from
    its saved folder) through PEFT."""
    import tempfile

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        net = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        if adapter is not None:
            net = PeftModel.from_pretrained(net, str(adapter.save(Path(tmp) / "adapter")))
        net.eval()
        out = []
        with torch.no_grad():
            for r in rows:
                ids = torch.tensor([r["prompt_token_ids"] + r["token_ids"]])
                logp = torch.log_softmax(net(input_ids=ids).logits[0].float(), -1)
                start = len(r["prompt_token_ids"])
                steps = logp[start - 1:start - 1 + len(r["token_ids"])]
                chosen = steps.gather(1, torch.tensor(r["token_ids"])[:, None])[:, 0]
                out.append((chosen, steps.max(-1).values - chosen))
    return out


def test_lora_run_ships_only_the_adapter(ray_session, tiny_model):
    """The engine serves exactly the adapter the learner trained.

    Greedy text of a tiny model is a weak, CPU-dependent signal (its frozen random tied embedding caps
    every token near 2%), so the check is direct: vLLM's greedy completions under the shipped adapter,
    teacher-forced through transformers + PEFT with the same adapter, are the argmax at every step and
    their log-probabilities match vLLM's. A module the engine ignored or a wrong LoRA scale moves these
    log-probabilities by far more than the tolerance. The recipe (lr 0.005, 100 epochs) falls steadily,
    so the adapter moves the output by a wide margin on every CPU.
    """
    from transformers import AutoTokenizer

    from halo_ray import driver
    from halo_ray.actors.learner import LearnerGroup
    from halo_ray.objectives import tokenize_pair
    from halo_ray.rollout import LoraAdapter
    from halo_ray.sections import LearnerConfig, LoraConfig, ObjectiveConfig

    model = ModelConfig(path=tiny_model, max_model_len=256, lora=LoraConfig(enabled=True, r=8, alpha=16))
    g = driver.RolloutGroup(model, RolloutConfig(num_engines=1, num_cpus=1, max_new_tokens=8, max_num_seqs=32))
    learner = LearnerGroup(model, LearnerConfig(zero_stage=0, lr=0.005, micro_batch_size=6, epochs=100),
                           ObjectiveConfig(name="sft"))
    try:
        before = g.generate(PROMPTS, n=1, temperature=0.0).to_pylist()
        tok = AutoTokenizer.from_pretrained(tiny_model)
        examples = [tokenize_pair(tok, p["prompt"], " + 42\n") for p in PROMPTS]
        first = learner.train(examples, epochs=1)
        last = learner.train(examples, epochs=99)
        assert last["loss"] < first["loss"] - 0.5, (first["loss"], last["loss"])
        ref = learner.rollout_weights_ref()
        import ray

        adapter = ray.get(ref)
        assert isinstance(adapter, LoraAdapter)
        assert adapter.tensors and all("lora_" in name for name in adapter.tensors), "only adapter tensors travel"
        assert len(adapter.tensors) == 2 * 4 * 2, "A and B of q/k/v/o in both layers"
        g.update_weights(ref, 1)
        after = g.generate(PROMPTS, n=1, temperature=0.0).to_pylist()
        assert [r["policy_version"] for r in after] == [1] * len(PROMPTS)
        base = [logp for logp, _ in _teacher_forced(tiny_model, None, after)]
        served = _teacher_forced(tiny_model, adapter, after)
        moved = 0.0
        for r, (logp, gap), base_logp in zip(after, served, base):
            assert gap.max().item() < 1e-3, f"{r['prompt_id']}: vLLM's greedy token is not the argmax under the adapter"
            diff = (logp - torch_tensor(r["logprobs"])).abs().max().item()
            assert diff < 2e-3, f"{r['prompt_id']}: engine and PEFT log-probs differ by {diff}"
            moved = max(moved, (logp - base_logp).abs().max().item())
        assert moved > 0.5, f"the adapter barely changes the model ({moved:.3f} nats): the check would be blind"
        assert [r["completion"] for r in after] != [r["completion"] for r in before]
    finally:
        learner.shutdown()
        g.shutdown()


def torch_tensor(values):
    import torch

    return torch.tensor(values, dtype=torch.float32)


def _random_adapter(base_path: str, seed: int):
    """A LoRA adapter with random A and B (PEFT's init leaves B at zero), as the learner ships one."""
    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from halo_ray.rollout import LoraAdapter

    torch.manual_seed(seed)
    net = get_peft_model(AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32), PeftLoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False))
    return LoraAdapter.from_peft(net, base_path)


def test_adapters_arriving_while_requests_are_in_flight(ray_session, tiny_model):
    """Adapter folders live while requests admitted under them are unfinished (vLLM reads them lazily).

    Three callers generate continuously while a new adapter arrives every few milliseconds; every
    request finishes, nothing fails or hangs, and only the current adapter's folder is left.
    """
    import threading
    import time

    import ray

    from halo_ray import driver
    from halo_ray.sections import LoraConfig

    model = ModelConfig(path=tiny_model, max_model_len=256, lora=LoraConfig(enabled=True, r=8, alpha=16))
    g = driver.RolloutGroup(model, RolloutConfig(num_engines=1, num_cpus=1, max_new_tokens=48, max_num_seqs=64))
    adapters = [ray.put(_random_adapter(tiny_model, seed)) for seed in range(4)]
    actor = g.actors[0]
    results, errors, stop = [], [], threading.Event()

    def caller(k: int):
        try:
            for round_ in range(ROUNDS):
                # One request per prompt, admitted one by one: their adapters differ when updates interleave.
                batch = [{"prompt_id": f"t{k}-{round_}-{i}", "prompt": p["prompt"]} for i, p in enumerate(PROMPTS)]
                results.append(ray.get(actor.generate.remote(batch, n=2, temperature=1.0, max_tokens=48),
                                       timeout=240).num_rows)
        except Exception as exc:  # reported below, with the other thread's outcome
            errors.append(repr(exc))
        finally:
            done.append(k)
            if len(done) == CALLERS:
                stop.set()

    ROUNDS, CALLERS, done = 6, 3, []
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(CALLERS)]
    try:
        for t in threads:
            t.start()
        version = 0
        while not stop.is_set() and version < 400:
            version += 1
            ray.get(actor.update_weights.remote(adapters[version % len(adapters)], version), timeout=60)
            time.sleep(0.002)
        for t in threads:
            t.join(timeout=300)
        assert not any(t.is_alive() for t in threads), "a generate call hung"
        assert not errors, errors
        assert results == [2 * len(PROMPTS)] * (ROUNDS * CALLERS), results
        assert version >= 3, "adapters must arrive while requests are in flight"
        (stats,) = g.stats()
        assert stats["adapter_folders"] == [f"v{version}"], stats["adapter_folders"]
    finally:
        g.shutdown()
