"""Typed errors for problems the user can fix.

Each message says what failed, the offending value, where (key path or file:line) and the fix.
A program that fails its tests is a result (a verdict), never one of these.
"""


class HaloError(Exception):
    """Base class of every user-facing halo-ray error; the CLI prints it and exits with status 2."""


class ConfigError(HaloError):
    """A configuration value, key or combination of values is invalid."""

    def __init__(self, problems):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DataError(HaloError):
    """An input file (prompts, problems, samples, preferences) is malformed."""


class ModelError(HaloError):
    """A model directory is missing or cannot be loaded."""


class SandboxError(HaloError):
    """The sandbox itself failed (infrastructure), as opposed to the program under test."""


class ClusterError(HaloError):
    """Ray could not be started or joined (a wrong address, leftover processes)."""


class ActorLostError(HaloError):
    """An actor of a run died for good more often than the run may restart itself; the message says how
    to continue (``--resume``)."""
