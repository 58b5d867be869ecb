"""Test-based DPO (seed 002): preference pairs from test pass rates, for offline and online DPO.

``pairs`` holds the pair rule (pure); the loss is ``halo_ray.objectives.dpo``; the job (preference
generation, evaluation) is ``halo_ray.driver.dpo`` and ``halo-ray dpo``.
"""

from halo_ray.dpo.pairs import (
    PAIR_FIELDS, SCORED_FIELDS, form_pairs, gap_counts, group_pairs, pair_examples, read_scored, stream_pairs,
)

__all__ = ["PAIR_FIELDS", "SCORED_FIELDS", "form_pairs", "gap_counts", "group_pairs", "pair_examples", "read_scored",
           "stream_pairs"]
