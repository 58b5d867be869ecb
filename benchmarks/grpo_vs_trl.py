"""GRPO: halo-ray's asynchronous stream, its synchronous mode, and TRL's ``GRPOTrainer``, side by side.

The same tiny SFT model (the demo's), task (the ``demo#raft`` prompts), reward (halo-ray's sandboxed
python verifier on ONE sandbox worker, pass/fail: 1.0 when the verdict is SUCCESS), sample budget and
hyper-parameters, in one run:

  (a) ``halo_ray.driver.grpo.grpo`` with ``stream.max_staleness: 2`` (sampling runs up to two policy
      versions ahead while the learner trains; vLLM rollout actor, verifier pool, DeepSpeed learner on Ray;
      ``--staleness K`` sets another bound);
  (b) the same with ``stream.max_staleness: 0`` (the synchronous algorithm: sample, verify, train);
  (c) TRL's ``GRPOTrainer`` on its CPU path (``use_cpu=True``, no vLLM: Hugging Face ``generate``),
      with a reward function that builds each record with ``halo_ray.bench.score.verify_record`` and
      calls ``halo_ray.verifiers.Verifier.verify`` (the same ``VerifierConfig``: python, workers 1,
      timeout 5 s) -- what a new user who wants a sandbox would write.

Shared settings: 4 prompts x 8 generations = 32 samples per step, completion length 32, temperature
1.0, top_p 1.0, no top-k, learning rate 2e-4 (the GRPO demo's), constant schedule, no warm-up, torch
AdamW (betas 0.9/0.999, eps 1e-8 on both sides), weight decay 0, gradient clipping 1.0, fp32, one
optimizer step per batch, ``--steps`` steps.

Our options (``objective.grpo``): token aggregation, advantages scaled by the group std (+1e-4),
eps_low 0.2 / eps_high 0.28, kl_coef 0, updates_per_batch 1, reward pass_fail, overlong keep,
filter_zero_variance OFF (TRL has no dynamic sampling; with it on we would train on fewer samples and
sample more), learner micro_batch_size 32 x grad_accum 1 (one optimizer step per 32 samples), no
held-out evaluation inside the runs, a checkpoint only after the last step.

TRL's options, and why they match: ``loss_type="dapo"`` (sum over all completion tokens of the step /
their number = our ``token`` aggregation); ``beta=0.0`` (= kl_coef 0, no reference model);
``scale_rewards="group"`` (divide by the group's std + 1e-4 = scale_std, std_eps 1e-4);
``epsilon=0.2``, ``epsilon_high=0.28`` (= eps_low/eps_high); ``num_generations=8`` (= samples_per_prompt);
``per_device_train_batch_size=32``, ``gradient_accumulation_steps=1``, ``steps_per_generation=1``,
``num_iterations=1`` (32 completions = 4 prompts generated per step, one optimizer step on them = one
update per batch); ``max_completion_length=32``, ``temperature=1.0``, ``top_p=1.0``, ``top_k=0``;
``learning_rate=2e-4``, ``lr_scheduler_type="constant"`` (TRL's default is linear decay),
``warmup_steps=0``, ``weight_decay=0.0``, ``max_grad_norm=1.0``; ``mask_truncated_completions=False``
(= overlong keep); ``importance_sampling_level="token"``; ``use_cpu=True``, ``use_vllm=False``, fp32;
``report_to="none"``, ``save_strategy="no"``, ``logging_steps=1``; ``shuffle_dataset=False`` on a
dataset that lists, step by step, the prompts our async run took (our sync run takes the same ones:
the stream's order is seeded), so the three runs see the same 4 prompts at every step and their
per-step rewards pair up (the prompt drawn moves a step's reward far more than 24 steps of learning).

What is measured: samples per second over the training steps (engine/model start excluded, pipeline
fill included): ours from the stream's start (the timeline's origin) to the last weight sync; TRL
from ``on_train_begin`` to the last ``on_step_end``. The Ray session stays up (idle) while TRL runs.
Also the sum of per-step windows on both sides (ours: ``rollout/samples / stream/samples_per_s`` of
metrics.jsonl, which leaves out the driver's work between steps; TRL: ``on_step_begin``..``on_step_end``).
CPU cost per sample on each side: the CPU seconds (user + system) of the benchmark's whole process tree
(its local Ray session, every actor, every sandbox) from the end of the first step to the end of the
last, over the samples of those steps. Cores divided by it is the most samples per second this box can
give at that cost, however well the work overlaps. The final mean reward is the mean pass/fail reward of the samples of the last quarter of the steps.
Where the time goes: ours from metrics.jsonl (``stream/wait_s``, ``time/train_s``, ``time/sync_s``) and
the busy time of each lane of timeline.json; TRL's split into generate (``_generate_single_turn``),
reward (our reward function) and the rest of the step (log-probs, loss, backward, optimizer), timed
by wrapping those two calls in a subclass (TRL itself unchanged). ``--heldout N`` adds held-out
pass@1 of the SFT model and of each final model on the first N ``demo#heldout`` problems, all four
through the same code: ``halo_ray.driver.stream.evaluate`` (what the GRPO runs use for their stages:
vLLM sampling with the demo's eval settings, 16 samples at temperature 0.8, our verifier, scored by
``halo_ray.bench``).

    python benchmarks/grpo_vs_trl.py [--model SFT_DIR] [--steps 24] [--heldout 16] [--keep] [--json]

Without ``--model`` the script builds the demo's SFT model first (``halo-ray sft train`` on a fresh
tiny model, a few minutes). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from machine import describe, tree_cpu_seconds  # benchmarks/machine.py (scripts run from their folder)

PROMPTS_PER_STEP = 4
GENERATIONS = 8
MAX_NEW_TOKENS = 32
TEMPERATURE = 1.0
LR = 2e-4
EPS_LOW, EPS_HIGH = 0.2, 0.28
SEED = 0
VERIFIER = dict(name="python", workers=1, timeout_s=5.0)


def machine() -> str:
    return describe("torch", "vllm", "trl", "transformers")


def build_sft(folder: Path) -> str:
    """The demo's SFT model on a fresh tiny base (the brief's recipe: 7 epochs at lr 2e-3)."""
    from halo_ray.tiny import init_tiny

    base = init_tiny(folder / "base", seed=0)
    cmd = [str(Path(sys.executable).parent / "halo-ray"), "sft", "train", "--model", str(base), "--data", "demo#sft",
           "--epochs", "7", "--set", "learner.lr=0.002", "--set", "learner.micro_batch_size=32",
           "--set", "learner.zero_stage=0", "--set", f"logging.run_dir={folder}", "--set", "logging.name=sft"]
    print("building the SFT model:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return str(folder / "sft" / "final")


def weight_change(base: str, trained: str) -> dict[str, float]:
    """How far training moved the weights: mean and max absolute change over every parameter (a final
    model identical to the SFT one would explain an identical held-out pass@1)."""
    import torch
    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    b = AutoModelForCausalLM.from_pretrained(trained, dtype=torch.float32).state_dict()
    diffs = [(b[k] - a[k]).abs() for k in a if k in b]
    return {"mean_abs": float(sum(d.sum() for d in diffs) / sum(d.numel() for d in diffs)),
            "max_abs": float(max(d.max() for d in diffs))}


class CpuWindow:
    """CPU seconds of this process tree (the benchmark, its local Ray session and every actor and sandbox
    under it) and wall seconds from the end of the first step to the end of the last: the steady state,
    start-up and pipeline fill left out, measured the same way on both sides."""

    def __init__(self):
        self.marks: list[tuple[float, float]] = []

    def step_end(self) -> None:
        self.marks.append((time.perf_counter(), tree_cpu_seconds()))

    def figures(self, samples_per_step: int) -> dict:
        if len(self.marks) < 2:
            return {}
        (w0, c0), (w1, c1) = self.marks[0], self.marks[-1]
        samples = samples_per_step * (len(self.marks) - 1)
        cores = len(os.sched_getaffinity(0))
        per_sample = (c1 - c0) / samples
        return {"steps": len(self.marks) - 1, "cpu_s": c1 - c0, "wall_s": w1 - w0, "cores_busy": (c1 - c0) / (w1 - w0),
                "cpu_ms_per_sample": 1000 * per_sample, "bound_samples_per_s": cores / per_sample}


def tail_mean(values: list[float], steps: int) -> float:
    """Mean of the last quarter of the per-step values (at least one step)."""
    k = max(1, steps // 4)
    return statistics.fmean(values[-k:])


# --------------------------------------------------------------------------- (a), (b): halo-ray


def ours_config(model: str, run_dir: Path, name: str, steps: int, staleness: int):
    from halo_ray.config import from_dict, to_dict
    from halo_ray.sections import DemoConfig

    d = to_dict(DemoConfig().grpo)
    d["model"]["path"] = model
    d["data"]["eval"] = ""
    d["rollout"].update(samples_per_prompt=GENERATIONS, temperature=TEMPERATURE, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS,
                        seed=SEED)
    d["verifier"].update(VERIFIER)
    d["objective"]["grpo"].update(aggregation="token", scale_std=True, std_eps=1e-4, eps_low=EPS_LOW, eps_high=EPS_HIGH,
                                  kl_coef=0.0, updates_per_batch=1, filter_zero_variance=False, overlong="keep",
                                  reward="pass_fail")
    d["learner"].update(lr=LR, lr_schedule="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                        micro_batch_size=PROMPTS_PER_STEP * GENERATIONS, grad_accum=1, bf16=False, seed=SEED)
    d["stream"].update(num_steps=steps, prompts_per_step=PROMPTS_PER_STEP, chunk_prompts=PROMPTS_PER_STEP,
                       max_staleness=staleness, eval_every=10 ** 6, timeline=True)
    d["checkpoint"].update(every_steps=10 ** 6, keep=1)
    d["logging"].update(run_dir=str(run_dir), name=name)
    return from_dict(type(DemoConfig().grpo), d)


def lanes(timeline: dict) -> tuple[dict, float, float]:
    """Busy seconds per lane (overlaps within a lane merged), the first span's start and the last sync's end."""
    names = {e["tid"]: e["args"]["name"] for e in timeline["traceEvents"] if e.get("ph") == "M"}
    spans: dict[str, list[tuple[float, float]]] = {}
    for e in timeline["traceEvents"]:
        if e.get("ph") == "X":
            spans.setdefault(names.get(e["tid"], str(e["tid"])), []).append((e["ts"] / 1e6, (e["ts"] + e["dur"]) / 1e6))
    busy = {}
    for lane, items in spans.items():
        total, edge = 0.0, float("-inf")
        for s, t in sorted(items):
            if t > edge:
                total += t - max(s, edge)
                edge = t
        busy[lane] = total
    first = min(s for items in spans.values() for s, _ in items)
    last = max(t for s, t in spans.get("sync", [(0.0, 0.0)]))
    return busy, first, last


def run_ours(model: str, run_dir: Path, name: str, steps: int, staleness: int) -> dict:
    import pyarrow.parquet as pq

    from halo_ray.driver.grpo import grpo

    cfg = ours_config(model, run_dir, name, steps, staleness)
    window = CpuWindow()

    def progress(line: str) -> None:
        print(f"  [{name}] {line}", flush=True)
        if line.startswith("step "):
            window.step_end()

    started = time.perf_counter()
    summary = grpo(cfg, progress=progress)
    total_s = time.perf_counter() - started
    path = Path(summary["run_dir"])
    rows = [json.loads(line) for line in open(path / "metrics.jsonl")]
    rows = [r for r in rows if "rollout/samples" in r]
    samples = sum(r["rollout/samples"] for r in rows)
    windows = [r["rollout/samples"] / r["stream/samples_per_s"] for r in rows if r["stream/samples_per_s"] > 0]
    busy, first, last = lanes(json.load(open(path / "timeline.json")))
    wall = last - min(first, 0.0)  # the timeline starts when the stream does
    rewards = [r["verify/train_reward_mean"] for r in rows]
    order = []  # the prompts of each step, in the order the stream took them (TRL replays it)
    for f in sorted((path / "samples").glob("step_*.parquet")):
        ids = pq.read_table(f, columns=["prompt_id"]).column("prompt_id").to_pylist()
        order.append(list(dict.fromkeys(ids)))
    out = {
        "max_staleness": staleness, "steps": len(rows), "samples": samples,
        "samples_per_s": samples / wall, "wall_s": wall,
        "samples_per_s_step_windows": samples / sum(windows), "step_windows_s": sum(windows),
        "reward_first": tail_mean(rewards[::-1], len(rows)), "reward_final": tail_mean(rewards, len(rows)),
        "rewards": [round(x, 4) for x in rewards],
        "time": {"wait_for_samples_s": sum(r["stream/wait_s"] for r in rows),
                 "train_s": sum(r.get("time/train_s", 0.0) for r in rows),
                 "sync_s": sum(r.get("time/sync_s", 0.0) for r in rows),
                 "lane_busy_s": {k: round(v, 3) for k, v in busy.items()},
                 "idle_fraction_last_step": {k.split("/")[-1]: round(v, 3) for k, v in rows[-1].items()
                                             if k.startswith("stream/idle/")}},
        "prompt_order": order, "reward_all_steps": statistics.fmean(rewards),
        "accounting": summary["accounting"], "staleness": summary.get("staleness"),
        "run_dir": str(path), "total_s_with_startup": total_s, "final_checkpoint": summary.get("final_checkpoint"),
        "cpu": window.figures(PROMPTS_PER_STEP * GENERATIONS),
    }
    return out


# --------------------------------------------------------------------------- (c): TRL


def run_trl(model: str, out_dir: Path, steps: int, problems: dict, order: list[list[str]]) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from halo_ray.bench.score import verify_record
    from halo_ray.verifiers import Verifier, VerifierConfig
    from halo_ray.verifiers.reward import scheme_reward

    times = {"generate_s": 0.0, "reward_s": 0.0}
    verifier = Verifier(VerifierConfig(**VERIFIER))  # sandboxes start before the clock, as ours do
    calls = {"n": 0}

    def pass_fail(prompts, completions, prompt_id, **kw) -> list[float]:
        t0 = time.perf_counter()
        calls["n"] += 1
        records = [verify_record(problems[pid], c, f"{pid}#{calls['n']}.{i}")
                   for i, (pid, c) in enumerate(zip(prompt_id, completions))]
        results = verifier.verify(records)
        times["reward_s"] += time.perf_counter() - t0
        return [scheme_reward("pass_fail", r["verdict"])[0] for r in results]

    class Timed(GRPOTrainer):
        def _generate_single_turn(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return super()._generate_single_turn(*a, **kw)
            finally:
                times["generate_s"] += time.perf_counter() - t0

    class Clock(TrainerCallback):
        def __init__(self):
            self.begin, self.step_start, self.windows, self.end = None, None, [], None

        def on_train_begin(self, args, state, control, **kw):
            self.begin = time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            self.step_start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.end = time.perf_counter()
            self.windows.append(self.end - self.step_start)
            cpu.step_end()

    tok = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    # The prompts of our run, step by step, in its order (not shuffled): each TRL step takes the next
    # PROMPTS_PER_STEP rows and repeats each num_generations times (its RepeatSampler), so all three
    # runs see the same prompts at the same step and their rewards pair up.
    ids = [pid for step in order for pid in step]
    if len(ids) != steps * PROMPTS_PER_STEP:
        raise RuntimeError(f"our run took {len(ids)} prompts, TRL needs {steps * PROMPTS_PER_STEP} in {steps} steps")
    data = Dataset.from_dict({"prompt": [problems[p]["prompt"] for p in ids], "prompt_id": ids})
    args = GRPOConfig(
        output_dir=str(out_dir), use_cpu=True, use_vllm=False, bf16=False, fp16=False, seed=SEED,
        loss_type="dapo", beta=0.0, scale_rewards="group", epsilon=EPS_LOW, epsilon_high=EPS_HIGH,
        num_generations=GENERATIONS, per_device_train_batch_size=PROMPTS_PER_STEP * GENERATIONS,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
        max_completion_length=MAX_NEW_TOKENS, temperature=TEMPERATURE, top_p=1.0, top_k=0,
        learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        mask_truncated_completions=False, importance_sampling_level="token",
        shuffle_dataset=False, max_steps=steps, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
        dataloader_num_workers=0,
    )
    clock, cpu = Clock(), CpuWindow()
    trainer = Timed(model=policy, reward_funcs=[pass_fail], args=args, train_dataset=data, processing_class=tok,
                    callbacks=[clock])
    try:
        trainer.train()
    finally:
        verifier.close()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    rewards = [h["reward"] for h in logs]
    wall = clock.end - clock.begin
    samples = len(clock.windows) * PROMPTS_PER_STEP * GENERATIONS
    final = out_dir / "final"
    trainer.save_model(str(final))
    tok.save_pretrained(str(final))
    step_s = sum(clock.windows)
    return {
        "steps": len(clock.windows), "samples": samples, "samples_per_s": samples / wall, "wall_s": wall,
        "samples_per_s_step_windows": samples / step_s, "step_windows_s": step_s,
        "reward_first": tail_mean(rewards[::-1], len(rewards)), "reward_final": tail_mean(rewards, len(rewards)),
        "rewards": [round(x, 4) for x in rewards], "reward_all_steps": statistics.fmean(rewards),
        "time": {"generate_s": times["generate_s"], "reward_s": times["reward_s"],
                 "rest_of_step_s": step_s - times["generate_s"] - times["reward_s"],
                 "torch_threads": torch.get_num_threads()},
        "final_model": str(final), "cpu": cpu.figures(PROMPTS_PER_STEP * GENERATIONS),
    }


# --------------------------------------------------------------------------- held-out pass@1


def heldout_pass1(models: dict[str, str], count: int) -> dict[str, float]:
    """pass@1 (16 samples, temperature 0.8, the demo's eval settings) of each model on ``count`` held-out problems."""
    from halo_ray import driver
    from halo_ray.data.sources import problems_from_spec
    from halo_ray.driver.stream import VerifierGroup, evaluate
    from halo_ray.sections import DemoConfig, ModelConfig, RolloutConfig, VerifierConfig

    heldout = [p.to_dict() for p in problems_from_spec("demo#heldout")][:count]
    ev = DemoConfig().grpo.eval
    out = {}
    verifiers = VerifierGroup(VerifierConfig(**VERIFIER), run="bench-heldout")
    try:
        for name, path in models.items():
            rollout = driver.RolloutGroup(ModelConfig(path=path, max_model_len=512),
                                          RolloutConfig(samples_per_prompt=GENERATIONS, temperature=TEMPERATURE,
                                                        max_new_tokens=MAX_NEW_TOKENS, seed=SEED))
            try:
                results, _ = evaluate(rollout, verifiers, heldout, ev, MAX_NEW_TOKENS, name)
                out[name] = results["pass_at_k"]["1"]
            finally:
                rollout.shutdown()
    finally:
        verifiers.shutdown()
    return out


# --------------------------------------------------------------------------- driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="the SFT model directory (default: build the demo's SFT model first)")
    parser.add_argument("--steps", type=int, default=24, help="GRPO steps of each run (default 24)")
    parser.add_argument("--heldout", type=int, default=16, help="held-out pass@1 on the first N demo#heldout problems (default 16; 0 skips it)")
    parser.add_argument("--staleness", type=int, default=2,
                        help="max_staleness of the asynchronous run (default 2: at 1 the engine waits for each step's "
                             "weights before it samples the step after next, and the learner for those samples)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary run directories")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from halo_ray import driver
    from halo_ray.data.sources import problems_from_spec

    tmp = Path(tempfile.mkdtemp(prefix="halo-ray-bench-grpo-"))
    model = str(tmp / "sft")
    if args.model:
        shutil.copytree(args.model, model, ignore=shutil.ignore_patterns("deepspeed", "rng_state*"))
    else:
        model = build_sft(tmp / "build")
    problems = {p.id: p.to_dict() for p in problems_from_spec("demo#raft")}
    mach = machine()
    print(f"machine: {mach}")
    print(f"workload: {len(problems)} demo#raft prompts, {args.steps} steps x {PROMPTS_PER_STEP} prompts x {GENERATIONS} "
          f"generations, {MAX_NEW_TOKENS} new tokens, temperature {TEMPERATURE}, lr {LR}; reward: python verifier, "
          f"1 sandbox worker, pass/fail; model {args.model or model}")
    figures: dict = {"machine": mach, "steps": args.steps, "prompts_per_step": PROMPTS_PER_STEP,
                     "generations": GENERATIONS, "max_new_tokens": MAX_NEW_TOKENS, "lr": LR}
    try:
        driver.init()
        print(f"(a) halo-ray GRPO, max_staleness {args.staleness}", flush=True)
        figures["ours_async"] = run_ours(model, tmp / "runs", "async", args.steps, args.staleness)
        print("(b) halo-ray GRPO, max_staleness 0", flush=True)
        figures["ours_sync"] = run_ours(model, tmp / "runs", "sync", args.steps, 0)
        print("(c) TRL GRPOTrainer, CPU", flush=True)
        figures["trl"] = run_trl(model, tmp / "trl", args.steps, problems, figures["ours_async"]["prompt_order"])
        if args.heldout:
            models = {"sft": model, "trl": figures["trl"]["final_model"]}
            for key in ("ours_async", "ours_sync"):
                ckpt = figures[key]["final_checkpoint"]  # a Hugging Face folder (plus deepspeed/)
                if ckpt and (Path(ckpt) / "config.json").exists():
                    models[key] = ckpt
            figures["heldout_pass_at_1"] = heldout_pass1(models, args.heldout)
            figures["heldout_problems"] = args.heldout
            figures["weight_change"] = {name: weight_change(model, path) for name, path in models.items() if name != "sft"}
    finally:
        driver.shutdown()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    a, b, c = figures["ours_async"], figures["ours_sync"], figures["trl"]
    figures["prompt_order"] = a.pop("prompt_order")
    figures["same_prompts_async_sync"] = b.pop("prompt_order") == figures["prompt_order"]
    for r in (a, b):
        r["between_steps_s"] = r["wall_s"] - r["step_windows_s"]
    diffs = [x - y for x, y in zip(a["rewards"], c["rewards"])]  # same prompts at each step: paired
    figures["reward_diff_ours_minus_trl"] = {
        "mean": statistics.fmean(diffs), "se": statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else None,
        "last_quarter": tail_mean(diffs, len(diffs))}
    for name, r in (("(a) halo-ray async ", a), ("(b) halo-ray sync  ", b), ("(c) TRL GRPOTrainer", c)):
        print(f"{name}: {r['samples_per_s']:7.1f} samples/s ({r['samples']} samples in {r['wall_s']:.1f}s; "
              f"per-step windows {r['samples_per_s_step_windows']:.1f}/s), reward first {r['reward_first']:.3f} "
              f"-> final {r['reward_final']:.3f}")
    for name, r in (("(a)", a), ("(b)", b)):
        t = r["time"]
        print(f"{name} time: waiting for samples {t['wait_for_samples_s']:.1f}s, train {t['train_s']:.1f}s, "
              f"weight sync {t['sync_s']:.1f}s, driver between steps (metrics, samples, timeline.json/png) "
              f"{r['between_steps_s']:.1f}s; lanes busy {t['lane_busy_s']}; accounting {r['accounting']}")
    t = c["time"]
    print(f"(c) time: generate {t['generate_s']:.1f}s, reward (verifier) {t['reward_s']:.1f}s, "
          f"rest of step (log-probs, loss, backward, optimizer) {t['rest_of_step_s']:.1f}s")
    for name, r in (("(a)", a), ("(b)", b), ("(c)", c)):
        u = r["cpu"]
        if u:
            print(f"{name} CPU, steps 2..{u['steps'] + 1}: {u['cpu_ms_per_sample']:.1f} ms per sample, "
                  f"{u['cores_busy']:.2f} of {len(os.sched_getaffinity(0))} cores busy; at that cost this box "
                  f"cannot exceed {u['bound_samples_per_s']:.0f} samples/s")
    d = figures["reward_diff_ours_minus_trl"]
    print(f"same prompts at every step (async = sync: {figures['same_prompts_async_sync']}; TRL replays them): "
          f"reward async - TRL per step {d['mean']:+.3f} (se {d['se'] or 0:.3f}), last quarter {d['last_quarter']:+.3f}")
    if "heldout_pass_at_1" in figures:
        print(f"held-out pass@1 ({args.heldout} problems): {figures['heldout_pass_at_1']}; weights moved from the "
              f"SFT model: {figures['weight_change']}")
    figures["speedup_over_trl"] = a["samples_per_s"] / c["samples_per_s"]
    figures["speedup_over_sync"] = a["samples_per_s"] / b["samples_per_s"]
    figures["reward_ours"], figures["reward_sync"], figures["reward_trl"] = a["reward_final"], b["reward_final"], c["reward_final"]
    print(f"speed-up of async over TRL {figures['speedup_over_trl']:.2f}x, over sync {figures['speedup_over_sync']:.2f}x")
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
