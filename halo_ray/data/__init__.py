"""Problems for every job: the schema, the data sources, seeded splits, SFT records, LLM generation.

``problems_from_spec(spec)`` is what jobs and commands call (a file or ``SOURCE[:ARG][#PART]``);
``halo-ray data prepare|validate|generate`` is the CLI.
"""

from halo_ray.data.schema import Problem, read_problems, validate_file, write_problems
from halo_ray.data.sources import SOURCES, SPEC_GRAMMAR, load_source, problems_from_spec
from halo_ray.data.splits import assign_splits, split_sizes

__all__ = ["Problem", "read_problems", "write_problems", "validate_file", "SOURCES", "SPEC_GRAMMAR", "load_source",
           "problems_from_spec", "assign_splits", "split_sizes"]
