"""``run_benchmark``: generate (or take) samples, verify them, score them, write results.json.

The driver injects the generation and verification callables (rollout actors and the verifier pool
on Ray, or plain local functions), so this module never imports Ray and tests run it directly.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Sequence

from halo_ray.bench.score import score_results, verify_record
from halo_ray.errors import ConfigError, DataError
from halo_ray.io import write_json, write_records

log = logging.getLogger(__name__)

GenerateFn = Callable[[list[dict]], Any]  # prompts -> pyarrow.Table or list of dicts
VerifyFn = Callable[[list[dict]], list[dict]]  # verify records -> verifier results


def _rows(table: Any) -> list[dict]:
    return table.to_pylist() if hasattr(table, "to_pylist") else list(table)


def normalize_samples(samples: Sequence[Mapping], problem_ids: set[str], source: str = "samples",
                      lines: Sequence[int] | None = None) -> list[dict]:
    """Check samples and give each ``prompt_id``, ``sample_index`` and ``completion``.

    ``prompt_id`` may be spelled ``id``; a missing ``sample_index`` counts up per problem in file order.
    Raises DataError naming the record (``FILE:LINE`` when ``lines`` gives each record's line) for a
    missing field, an unknown problem id or a repeated index.
    """
    def where(number: int) -> str:
        return f"{source}:{number}" if lines else f"{source}: record {number}"

    out, seen, next_index = [], set(), {}
    for number, sample in zip(lines or range(1, len(samples) + 1), samples):
        pid = sample.get("prompt_id", sample.get("id"))
        if pid is None or not isinstance(sample.get("completion"), str):
            raise DataError(f"{where(number)}: needs prompt_id (or id) and a string completion, "
                            f"got keys {sorted(sample)}")
        pid = str(pid)
        if pid not in problem_ids:
            raise DataError(f"{where(number)}: prompt_id {pid!r} is not in the problems file")
        index = sample.get("sample_index")
        index = next_index.get(pid, 0) if index is None else int(index)
        next_index[pid] = max(next_index.get(pid, 0), index + 1)
        if (pid, index) in seen:
            raise DataError(f"{where(number)}: sample {index} of {pid!r} appears twice")
        seen.add((pid, index))
        out.append({"prompt_id": pid, "sample_index": index, "completion": sample["completion"]})
    return out


def run_benchmark(config, problems: Sequence[Mapping], generate_fn: GenerateFn | None, verify_fn: VerifyFn,
                  samples: Sequence[Mapping] | None = None, sample_lines: Sequence[int] | None = None) -> dict:
    """Benchmark a model (or a file of samples) on problems and write ``config.benchmark.output``.

    Args:
        config: a ``BenchmarkJobConfig``; n is ``rollout.samples_per_prompt``, ks come from ``benchmark.ks``.
        problems: ``halo_ray.data.Problem`` objects or dicts (``id``, ``prompt``, ``tests``/``test_cases``,
            ``entry_point``, ``language``, ``source``, ``metadata``).
        generate_fn: prompts ``[{"prompt_id", "prompt"}]`` -> table or records with ``prompt_id``,
            ``sample_index``, ``completion``; unused when ``samples`` is given.
        verify_fn: verify records (see ``verify_record``) -> results ``{id, verdict, reward, ...}``.
        samples: existing completions to score instead of generating (``--samples-file``).
        sample_lines: the file line of each of ``samples``, for errors (optional).
    Returns:
        The results dict (see ``score_results``) led by ``subset`` (``benchmark.problems``) and
        ``n_problems``, also written as JSON to ``benchmark.output`` when set;
        every scored sample goes to ``benchmark.save_samples`` when set.
    """
    bench = config.benchmark
    problems = [p.to_dict() if hasattr(p, "to_dict") else dict(p) for p in problems]
    ids = [str(p["id"]) for p in problems]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"benchmark: problem ids repeat in the problems file, e.g. {dup[:3]}")
    by_id = {str(p["id"]): p for p in problems}
    start = time.perf_counter()
    generation_s = None
    if samples is None:
        if generate_fn is None:
            raise ConfigError("benchmark: nothing to score: give a model to generate with or benchmark.samples_file")
        prompts = [{"prompt_id": pid, "prompt": by_id[pid]["prompt"]} for pid in ids]
        samples = _rows(generate_fn(prompts))
        generation_s = time.perf_counter() - start
        source = "generated samples"
    else:
        source = bench.samples_file or "samples"
    samples = sorted(normalize_samples(samples, set(ids), source, sample_lines if generation_s is None else None), key=lambda s: (s["prompt_id"], s["sample_index"]))
    records = [verify_record(by_id[s["prompt_id"]], s["completion"], f"{s['prompt_id']}#{s['sample_index']}")
               for s in samples]
    verify_start = time.perf_counter()
    results = {r["id"]: r for r in verify_fn(records)}
    verification_s = time.perf_counter() - verify_start
    lost = [rec["id"] for rec in records if rec["id"] not in results]
    if lost:
        raise DataError(f"benchmark: the verifier returned no result for {len(lost)} sample(s), e.g. {lost[:3]}")
    grouped: dict[str, list[dict]] = {}
    for sample, record in zip(samples, records):
        grouped.setdefault(sample["prompt_id"], []).append(results[record["id"]])
    settings = {"verifier": config.verifier.name, "reward": config.verifier.reward, "timeout_s": config.verifier.timeout_s}
    if generation_s is not None:
        r = config.rollout
        settings.update(samples_per_prompt=r.samples_per_prompt, temperature=r.temperature, top_p=r.top_p,
                        seed=r.seed, max_new_tokens=r.max_new_tokens)
    else:
        settings["samples_file"] = bench.samples_file
    timing = {"generation_s": generation_s, "verification_s": verification_s,
              "total_s": time.perf_counter() - start}
    model = config.model.path or ("embedded tiny model" if generation_s is not None else bench.samples_file)
    report = score_results([by_id[pid] for pid in ids], grouped, bench.ks, model=model, timing=timing,
                           settings=settings)
    # Name the problem set and its size first, so no score is read without them.
    report = {"subset": bench.problems or "(problems given by the caller)", "n_problems": len(ids), **report}
    log.info("bench/pass_at_k=%s bench/compile_rate=%.3f bench/samples=%d bench/verifications_per_s=%.1f",
             report["pass_at_k"], report["compile_rate"], report["samples"],
             len(records) / max(verification_s, 1e-9))
    if bench.output:
        write_json(bench.output, report)
    if bench.save_samples:
        write_records(bench.save_samples, [
            {**s, "verdict": results[rec["id"]]["verdict"], "reward": results[rec["id"]].get("reward"),
             "pass_rate": results[rec["id"]].get("pass_rate"), "verify_s": results[rec["id"]].get("duration_s")}
            for s, rec in zip(samples, records)])
    return report


def benchmark_from_config(config, generate_fn: GenerateFn | None = None, verify_fn: VerifyFn | None = None) -> dict:
    """Read ``benchmark.problems`` (a file or SPEC, see ``halo_ray.data.sources.problems_from_spec``; and ``benchmark.samples_file`` when set) and call ``run_benchmark``.

    Args:
        config: a ``BenchmarkJobConfig``.
        generate_fn: prompts -> samples (the driver passes rollout actors); not needed with a samples file.
        verify_fn: records -> results; defaults to the local ``halo_ray.verifiers.verify_batch``
            with ``config.verifier`` (the driver passes the Ray verifier pool).
    Returns:
        The results dict, also written to ``benchmark.output``.
    """
    from halo_ray.data.sources import problems_from_spec

    bench = config.benchmark
    if not bench.problems:
        raise ConfigError("benchmark.problems: required: name the problems (--problems FILE or a SPEC such as "
                          "humaneval#all, mbpp#official_test)")
    problems = problems_from_spec(bench.problems)
    samples = lines = None
    if bench.samples_file:
        from halo_ray.data.schema import iter_file

        numbered = []
        for line, record, error in iter_file(bench.samples_file):
            if error:
                raise DataError(f"{bench.samples_file}:{line}: {error}")
            numbered.append((line, record))
        lines, samples = [n for n, _ in numbered], [r for _, r in numbered]
    if verify_fn is None:
        from halo_ray.verifiers import verify_batch

        def verify_fn(records):
            return verify_batch(records, config.verifier)

    return run_benchmark(config, problems, generate_fn, verify_fn, samples=samples, sample_lines=lines)
