"""The ``objective`` config section: which objective trains, each objective's own parameters, and the
off-policy correction of engine-sampled tokens."""

from __future__ import annotations

from dataclasses import dataclass

from halo_ray.config import opt
from halo_ray.objectives import OBJECTIVES
from halo_ray.objectives.correction import CorrectionConfig
from halo_ray.objectives.dpo import DPOConfig
from halo_ray.objectives.grpo import GRPOConfig


@dataclass(frozen=True)
class ObjectiveConfig:
    name: str = opt("raft", "training objective from the objectives registry", choices=OBJECTIVES)
    grpo: GRPOConfig = opt(GRPOConfig(), "GRPO / DAPO parameters (used when name is grpo)")
    dpo: DPOConfig = opt(DPOConfig(), "DPO parameters (used when name is dpo)")
    correction: CorrectionConfig = opt(CorrectionConfig(), "off-policy correction of engine-sampled tokens (objectives that learn from the policy's own samples: grpo)")
