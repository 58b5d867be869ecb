"""Rollout throughput: RolloutActor through Ray, bare ``vllm.LLM.generate``, Hugging Face ``generate``.

On the same prompts and sampling settings (temperature 1.0, per-prompt seeds, ``n`` samples per
prompt, ``ignore_eos`` so that every sample is ``--max-new-tokens`` long) it measures generated
tokens per second of

  (a) ``halo_ray.driver.RolloutGroup`` with one RolloutActor (vLLM) -- timed from the driver, the
      Arrow table back in the driver included, engine start excluded;
  (b) bare ``vllm.LLM.generate`` in one process, built with the same engine arguments and environment
      (``halo_ray.rollout.engine_kwargs`` / ``engine_env``) -- in a child process that idles while (a)
      runs, so the two never share the cores at the same time;
  (c) Hugging Face ``model.generate`` on the ``small`` model at equal batch (all prompts x ``n``
      sequences in one batch, sampling, ``min_new_tokens = max_new_tokens``), against (a) on ``small``.

Each is warmed up once; (a) and (b) then alternate for ``--reps`` repetitions (order flipped every
repetition) and the median is reported. Ray gives the actor ``OMP_NUM_THREADS=int(num_cpus)``; bare vLLM
gets the same by default (``--bare-threads``), so that the ratio measures the wrapper, not a thread count. The last line is one JSON object.

    python benchmarks/rollout.py [--size small|tiny] [--prompts 16] [--n 4] [--max-new-tokens 64] [--reps 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from machine import describe  # benchmarks/machine.py (scripts run from their folder)

SEED = 1234
TEMPERATURE = 1.0


def make_prompts(count: int) -> list[dict]:
    """Short code prompts of a few shapes, ids p0..p{count-1}."""
    shapes = ["def f{i}(x):\n    return x", "def add_{i}(a, b):\n    \"\"\"Add two numbers.\"\"\"\n",
              "class Stack{i}:\n    def __init__(self):\n", "import os\n\ndef list_dir_{i}(path):\n",
              "def fib_{i}(n):\n    if n < 2:\n        return n\n"]
    return [{"prompt_id": f"p{i}", "prompt": shapes[i % len(shapes)].format(i=i)} for i in range(count)]


def configs(model_dir: str, args):
    from halo_ray.sections import ModelConfig, RolloutConfig

    model = ModelConfig(path=model_dir, max_model_len=512)
    rollout = RolloutConfig(num_engines=1, num_cpus=args.engine_cpus, kv_cache_gib=1, samples_per_prompt=args.n,
                            temperature=TEMPERATURE, max_new_tokens=args.max_new_tokens, seed=SEED)
    return model, rollout


# --------------------------------------------------------------------------- (b) bare vLLM, child process

def bare_worker(conn, model_dir: str, args_dict: dict) -> None:
    """Child process: one ``vllm.LLM`` with RolloutEngine's arguments; runs ``generate`` on request."""
    args = argparse.Namespace(**args_dict)
    if args.bare_threads > 0:  # before torch is imported in this process
        os.environ["OMP_NUM_THREADS"] = str(args.bare_threads)
    from halo_ray.rollout import engine_env, engine_kwargs, prompt_seed

    model, rollout = configs(model_dir, args)
    for key, value in engine_env(rollout).items():
        os.environ.setdefault(key, value)
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(**engine_kwargs(model, rollout))
    import torch

    conn.send({"load_s": time.perf_counter() - started, "torch_threads": torch.get_num_threads(),
               "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset")})
    prompts = make_prompts(args.prompts)
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            break
        # What RolloutEngine.sampling_params builds: same n, temperature, top_p, max_tokens, seeds, logprobs.
        params = [SamplingParams(n=args.n, temperature=TEMPERATURE, top_p=1.0, max_tokens=args.max_new_tokens,
                                 seed=prompt_seed(SEED, p["prompt_id"]), logprobs=0, ignore_eos=True)
                  for p in prompts]
        start = time.perf_counter()
        outs = llm.generate([p["prompt"] for p in prompts], params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
        conn.send({"tokens": tokens, "seconds": elapsed, "sequences": sum(len(o.outputs) for o in outs)})
    conn.close()


class Bare:
    def __init__(self, model_dir: str, args):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=bare_worker, args=(child, model_dir, vars(args)), daemon=True)
        self.proc.start()
        self.info = self.conn.recv()

    def run(self) -> dict:
        self.conn.send("run")
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send("stop")
        self.proc.join(60)


# --------------------------------------------------------------------------- (a) RolloutActor via Ray

class Wrapped:
    def __init__(self, model_dir: str, args):
        from halo_ray import driver

        model, rollout = configs(model_dir, args)
        started = time.perf_counter()
        self.group = driver.RolloutGroup(model, rollout)  # waits until the engine is loaded
        self.load_s = time.perf_counter() - started
        self.args, self.prompts = args, make_prompts(args.prompts)

    def run(self) -> dict:
        import ray

        busy0 = ray.get(self.group.actors[0].stats.remote())["busy_s"]
        start = time.perf_counter()
        table = self.group.generate(self.prompts, n=self.args.n, temperature=TEMPERATURE,
                                    max_tokens=self.args.max_new_tokens, seed=SEED, ignore_eos=True)
        elapsed = time.perf_counter() - start
        busy = ray.get(self.group.actors[0].stats.remote())["busy_s"] - busy0
        tokens = sum(len(t) for t in table.column("token_ids").to_pylist())
        return {"tokens": tokens, "seconds": elapsed, "sequences": table.num_rows, "engine_loop_s": busy}

    def close(self) -> None:
        self.group.shutdown()


# --------------------------------------------------------------------------- (c) Hugging Face generate

class HF:
    def __init__(self, model_dir: str, args):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch, self.args = torch, args
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.tok.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.batch = self.tok([p["prompt"] for p in make_prompts(args.prompts)], return_tensors="pt", padding=True)

    def run(self) -> dict:
        torch = self.torch
        torch.manual_seed(SEED)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(**self.batch, do_sample=True, temperature=TEMPERATURE, top_p=1.0, top_k=0,
                                      max_new_tokens=self.args.max_new_tokens, min_new_tokens=self.args.max_new_tokens,
                                      num_return_sequences=self.args.n, pad_token_id=self.tok.pad_token_id)
        elapsed = time.perf_counter() - start
        new = out[:, self.batch["input_ids"].shape[1]:]
        return {"tokens": int(new.numel()), "seconds": elapsed, "sequences": int(new.shape[0])}


# --------------------------------------------------------------------------- driver

def summary(runs: list[dict]) -> dict:
    rates = [r["tokens"] / r["seconds"] for r in runs]
    med = statistics.median(rates)
    out = {"tokens_per_s": med, "tokens": runs[0]["tokens"], "seconds": statistics.median(r["seconds"] for r in runs),
           "runs_tokens_per_s": [round(x, 1) for x in rates], "sequences": runs[0]["sequences"]}
    if "engine_loop_s" in runs[0]:
        out["engine_loop_s"] = statistics.median(r["engine_loop_s"] for r in runs)
    return out


def machine() -> str:
    return describe("torch", "vllm")


def compare(wrapped: Wrapped, bare: Bare, reps: int) -> tuple[list[dict], list[dict]]:
    """Warm up each, then alternate (a)/(b) ``reps`` times, flipping the order every repetition."""
    wrapped.run()
    bare.run()
    a_runs, b_runs = [], []
    for rep in range(reps):
        pair = [("a", wrapped), ("b", bare)]
        for name, engine in (pair if rep % 2 == 0 else pair[::-1]):
            (a_runs if name == "a" else b_runs).append(engine.run())
    return a_runs, b_runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "small"), default="small",
                        help="model for (a) vs (b); (c) always uses small (default: small)")
    parser.add_argument("--prompts", type=int, default=16, help="prompts per batch (default 16)")
    parser.add_argument("--n", type=int, default=4, help="samples per prompt (default 4)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens per sample, EOS ignored (default 64)")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions of (a) and (b), alternating, median reported (default 5)")
    parser.add_argument("--hf-reps", type=int, default=3, help="timed repetitions of (c), median reported (default 3)")
    parser.add_argument("--engine-cpus", type=float, default=1.0, help="num_cpus Ray reserves for the engine (default 1, the config default)")
    parser.add_argument("--bare-threads", type=int, default=-1,
                        help="OMP_NUM_THREADS for bare vLLM: -1 (default) the same as Ray gives the actor "
                             "(int(engine-cpus)), so that the ratio is the wrapper's cost; 0 leaves vLLM's default")
    parser.add_argument("--skip-hf", action="store_true", help="skip (c)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    args = parser.parse_args()
    actor_threads = max(1, int(args.engine_cpus))  # Ray sets OMP_NUM_THREADS=int(num_cpus) in the actor
    if args.bare_threads < 0:
        args.bare_threads = actor_threads

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from halo_ray import driver
    from halo_ray.rollout import engine_kwargs
    from halo_ray.tiny import init_tiny

    tmp = Path(tempfile.mkdtemp(prefix="halo-ray-bench-rollout-"))
    dirs = {}
    for size in sorted({args.size, "small"} if not args.skip_hf else {args.size}):
        dirs[size] = str(init_tiny(tmp / size, seed=0, size=size))
    seqs = args.prompts * args.n
    mach = machine()
    print(f"machine: {mach}")
    print(f"workload: {args.prompts} prompts x n={args.n} = {seqs} sequences x {args.max_new_tokens} new tokens "
          f"(ignore_eos), temperature {TEMPERATURE}, per-prompt seeds; warm-up 1, median of {args.reps} ((c): {args.hf_reps})")
    model, rollout = configs(dirs[args.size], args)
    print(f"engine args: {engine_kwargs(model, rollout)}")

    driver.init()
    figures: dict = {"machine": mach, "size": args.size, "prompts": args.prompts, "n": args.n,
                     "max_new_tokens": args.max_new_tokens, "reps": args.reps}
    bare = Bare(dirs[args.size], args)
    wrapped = Wrapped(dirs[args.size], args)
    print(f"engine load: RolloutActor {wrapped.load_s:.1f}s, bare vLLM {bare.info['load_s']:.1f}s (not timed)")
    print(f"engine threads: RolloutActor OMP_NUM_THREADS={actor_threads} (set by Ray from num_cpus={args.engine_cpus}); "
          f"bare vLLM OMP_NUM_THREADS={bare.info['omp_num_threads']}, torch threads {bare.info['torch_threads']}")
    figures["threads"] = {"rollout_actor_omp": actor_threads, "bare_vllm_omp": bare.info["omp_num_threads"],
                          "bare_vllm_torch": bare.info["torch_threads"]}
    try:
        a_runs, b_runs = compare(wrapped, bare, args.reps)
    finally:
        bare.close()
    a, b = summary(a_runs), summary(b_runs)
    if a["tokens"] != b["tokens"]:
        print(f"warning: token counts differ (a {a['tokens']}, b {b['tokens']}); rates use each one's own count")
    figures["rollout_actor"], figures["bare_vllm"] = a, b
    figures["ratio_to_bare_vllm"] = a["tokens_per_s"] / b["tokens_per_s"]
    print(f"({args.size}) RolloutActor via Ray: {a['tokens_per_s']:8.0f} tokens/s  ({a['tokens']} tokens, {a['seconds']:.2f}s; "
          f"engine loop {a['engine_loop_s']:.2f}s; runs {a['runs_tokens_per_s']})")
    print(f"({args.size}) bare vLLM generate:   {b['tokens_per_s']:8.0f} tokens/s  ({b['tokens']} tokens, {b['seconds']:.2f}s; "
          f"runs {b['runs_tokens_per_s']})")
    print(f"ratio RolloutActor / bare vLLM: {figures['ratio_to_bare_vllm']:.3f}")

    if not args.skip_hf:
        if args.size == "small":
            a_small = a
        else:  # RolloutActor on the small model for the comparison with HF
            wrapped.close()
            wrapped = Wrapped(dirs["small"], args)
            wrapped.run()
            a_small = summary([wrapped.run() for _ in range(args.reps)])
            figures["rollout_actor_small"] = a_small
            print(f"(small) RolloutActor via Ray: {a_small['tokens_per_s']:8.0f} tokens/s  ({a_small['tokens']} tokens, "
                  f"{a_small['seconds']:.2f}s; runs {a_small['runs_tokens_per_s']})")
        wrapped.close()
        hf = HF(dirs["small"], args)
        import torch

        figures["threads"]["hf_torch"] = torch.get_num_threads()
        hf.run()
        c = summary([hf.run() for _ in range(args.hf_reps)])
        figures["hf_generate_small"] = c
        figures["ratio_to_hf_generate"] = a_small["tokens_per_s"] / c["tokens_per_s"]
        print(f"(small) HF generate:          {c['tokens_per_s']:8.0f} tokens/s  ({c['tokens']} tokens, {c['seconds']:.2f}s; "
              f"batch {c['sequences']}, torch threads {torch.get_num_threads()}; runs {c['runs_tokens_per_s']})")
        print(f"ratio RolloutActor / HF generate (small, batch {seqs}): {figures['ratio_to_hf_generate']:.2f}")
    else:
        wrapped.close()
        figures["ratio_to_hf_generate"] = None
    driver.shutdown()
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
