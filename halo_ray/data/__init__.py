"""Problems for every job: the schema, the data sources, seeded splits, SFT records, LLM generation.

``read_problems(path)`` is what jobs call; ``halo-ray data prepare|validate|generate`` is the CLI.
"""

from halo_ray.data.schema import Problem, read_problems, validate_file, write_problems
from halo_ray.data.sources import SOURCES, load_source
from halo_ray.data.splits import assign_splits, split_sizes

__all__ = ["Problem", "read_problems", "write_problems", "validate_file", "SOURCES", "load_source",
           "assign_splits", "split_sizes"]
