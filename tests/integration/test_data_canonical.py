"""Every canonical HumanEval and MBPP solution passes our sandboxed verifier.

A failure here means either the data (tests, setup order) or the verifier is wrong; the assertion
lists each failing id with its verdict and detail.
"""

from __future__ import annotations

import pytest

from halo_ray.data import load_source
from halo_ray.sections import VerifierConfig


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["humaneval", "mbpp", "mbpp_sanitized"])
def test_canonical_solutions_pass_the_verifier(dataset):
    from halo_ray.verifiers import verify_batch

    problems = load_source(dataset)
    records = [{"id": p.id, "language": p.language, "code": p.metadata["canonical_solution"], "tests": p.tests,
                "entry_point": p.entry_point} for p in problems]
    # MBPP task 123 (amicable numbers below 9999) takes about 7 s on a loaded machine.
    results = verify_batch(records, VerifierConfig(timeout_s=30.0))
    assert len(results) == len(records)
    failed = [(r["id"], r.get("verdict"), r.get("detail", "")) for r in results if r["verdict"] != "SUCCESS"]
    assert not failed, f"{len(failed)} of {len(records)} canonical {dataset} solutions fail: {failed[:20]}"
