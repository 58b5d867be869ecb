"""The asynchronous stream's bookkeeping, shared by every algorithm (RAFT, GRPO, online DPO, SRL).

Plain Python, no Ray: ``halo_ray.driver.stream.Stream`` drives it with refs. The stream walks one
seeded order of the training prompts (``prompt_at``: a new permutation each epoch), so a prompt's
place in the run is a *position*. Positions are issued to the rollout engines in chunks, come back
scored as *groups* (all samples of one prompt), wait in the buffer, and are taken by learner steps,
``prompts_per_step`` groups at a time, oldest position first.

How far sampling may run ahead is the staleness bound k (``stream.max_staleness``): positions are
issued only while ``used + in_flight < (steps_done + k + 1) * prompts_per_step``, where ``used``
counts groups a step has taken and ``steps_done`` the steps finished (trained and synced). At k = 0
the next step's prompts are issued only once the previous step's weights are synced: exactly the
synchronous algorithm. At k = 1 the next step is sampled while the learner trains, and so on. A group
whose oldest policy version lags the current one by more than k when a step would take it is dropped
as stale and counted; a group the algorithm rejects (GRPO's zero-variance filter) is dropped as
filtered. Either way its position is consumed and another prompt is issued in its place.

Every sample is accounted for: ``generated = used + stale + filtered + failed`` (samples), where
``used`` is what the algorithm trained on or deliberately left out (RAFT's selection reports its own
``kept``/``filtered`` split of the groups it took).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from halo_ray.verifiers.verdicts import UNSCORED


def prompt_at(prompt_ids: Sequence[str], position: int, seed: int) -> str:
    """The prompt id at ``position`` of the stream's order: epoch e is a seeded permutation of the ids."""
    ids = sorted(prompt_ids)
    epoch, offset = divmod(position, len(ids))
    order = ids[:]
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return order[offset]


@dataclass
class Group:
    """All samples of one prompt at one position, scored.

    ``rows`` are the samples (dicts, or whatever the caller keeps); ``versions`` the policy versions
    they saw, oldest first and newest last per sample.
    """

    position: int
    prompt_id: str
    rows: list
    min_version: int
    max_version: int
    ready_at: float = 0.0

    @property
    def size(self) -> int:
        return len(self.rows)


@dataclass
class StreamState:
    """Resumable state: what was used, what was in flight, the counters. JSON-serialisable via ``to_dict``."""

    next_position: int = 0
    steps_done: int = 0
    used_groups: int = 0
    reissue: list[int] = field(default_factory=list)  # positions in flight at the checkpoint: issue them first
    counts: dict[str, int] = field(default_factory=lambda: dict(generated=0, used=0, stale=0, filtered=0, failed=0))
    stale_groups: int = 0
    filtered_groups: int = 0
    staleness: dict[str, int] = field(default_factory=dict)  # histogram of used samples' staleness

    def to_dict(self) -> dict:
        return {"next_position": self.next_position, "steps_done": self.steps_done, "used_groups": self.used_groups,
                "reissue": list(self.reissue), "counts": dict(self.counts), "stale_groups": self.stale_groups,
                "filtered_groups": self.filtered_groups, "staleness": dict(self.staleness)}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamState":
        return cls(**{k: (list(v) if k == "reissue" else dict(v) if isinstance(v, dict) else v) for k, v in d.items()})


class StreamBuffer:
    """Which positions to issue, which groups a step takes, and the accounting.

    Args:
        prompts_per_step: groups per learner step (P).
        max_staleness: k, in policy versions.
        total_steps: steps of the run; nothing is issued beyond what they can use.
        state: a ``StreamState`` to resume from.
    """

    def __init__(self, prompts_per_step: int, max_staleness: int, total_steps: int, state: StreamState | None = None):
        if prompts_per_step < 1:
            raise ValueError(f"prompts_per_step must be at least 1, got {prompts_per_step}")
        self.per_step, self.k, self.total_steps = prompts_per_step, max_staleness, total_steps
        self.state = state or StreamState()
        self.in_flight: set[int] = set()
        self.ready: dict[int, Group] = {}

    # -- issuing ------------------------------------------------------------------------------------

    def budget(self) -> int:
        """Positions that may be issued now (see the module doc)."""
        s = self.state
        ahead = min(s.steps_done + self.k + 1, self.total_steps)
        return max(0, ahead * self.per_step - s.used_groups - len(self.in_flight) - len(self.ready))

    def issue(self, limit: int) -> list[int]:
        """Take up to ``min(limit, budget())`` positions to sample (re-issued ones after a resume first)."""
        n = min(limit, self.budget())
        out = []
        while len(out) < n and self.state.reissue:
            out.append(self.state.reissue.pop(0))
        while len(out) < n:
            out.append(self.state.next_position)
            self.state.next_position += 1
        self.in_flight.update(out)
        return out

    def add(self, group: Group, failed: int = 0) -> None:
        """A scored group arrived; ``failed`` of its samples could not be verified (infrastructure).

        A group whose every sample failed is consumed at once (and replaced); otherwise its failed
        samples are counted and it waits with the rest.
        """
        self.in_flight.discard(group.position)
        self.state.counts["generated"] += group.size + failed
        self.state.counts["failed"] += failed
        if group.size == 0:
            return
        self.ready[group.position] = group

    def lost(self, positions: Sequence[int]) -> None:
        """Positions whose chunk failed outright (an actor died): issue them again."""
        for p in positions:
            if p in self.in_flight:
                self.in_flight.discard(p)
                self.state.reissue.append(p)
        self.state.reissue.sort()

    # -- taking -------------------------------------------------------------------------------------

    def stale(self, group: Group, version: int) -> bool:
        return version - group.min_version > self.k

    def take(self, version: int, need: int | None = None) -> list[Group] | None:
        """The next step's groups (oldest positions first), or None while fewer than ``need`` (default P)
        fresh ones are ready.

        Stale groups met on the way are dropped and counted (their positions are replaced by the budget).
        """
        for pos in sorted(self.ready):
            group = self.ready[pos]
            if self.stale(group, version):
                del self.ready[pos]
                self.state.stale_groups += 1
                self.state.counts["stale"] += group.size
        need = self.per_step if need is None else need
        if len(self.ready) < need:
            return None
        chosen = [self.ready.pop(pos) for pos in sorted(self.ready)[:need]]
        self.state.used_groups += len(chosen)
        return chosen

    def reject(self, groups: Sequence[Group]) -> None:
        """Groups the algorithm filtered out after taking them (no signal): replaced by new prompts."""
        for g in groups:
            self.state.used_groups -= 1
            self.state.filtered_groups += 1
            self.state.counts["filtered"] += g.size

    def use(self, groups: Sequence[Group], version: int) -> None:
        """Count the groups a step trained on (or deliberately left out), with their staleness."""
        for g in groups:
            self.state.counts["used"] += g.size
            lag = str(version - g.min_version)
            self.state.staleness[lag] = self.state.staleness.get(lag, 0) + g.size

    def step_done(self) -> None:
        self.state.steps_done += 1

    def checkpoint_state(self) -> dict:
        """State to save after a step: positions in flight or waiting are issued again on resume.

        Waiting groups leave the saved ``generated`` count with their positions: the resumed run samples
        them again and counts them then, so its accounting balances without them.
        """
        d = self.state.to_dict()
        d["reissue"] = sorted(set(d["reissue"]) | self.in_flight | set(self.ready))
        d["counts"]["generated"] -= sum(g.size for g in self.ready.values())
        return d

    def balanced(self) -> bool:
        c = self.state.counts
        return c["generated"] == c["used"] + c["stale"] + c["filtered"] + c["failed"] + sum(
            g.size for g in self.ready.values())


def group_rows(rows: Sequence[dict[str, Any]], positions: dict[str, int], now: float = 0.0) -> tuple[list[Group], dict[int, int]]:
    """Split a scored chunk's rows into groups by prompt; FAILED samples (``UNSCORED``) are set apart.

    Args:
        rows: scored samples (``prompt_id``, ``policy_version``, ``policy_version_last``, ``verdict``...).
        positions: the chunk's prompt id -> stream position.
    Returns:
        ``(groups, failed)``: one ``Group`` per position (possibly empty when every sample failed) and
        the failed-sample count per position.
    """
    by_pid: dict[str, list] = {pid: [] for pid in positions}
    failed = {pos: 0 for pos in positions.values()}
    for r in rows:
        if r.get("verdict") in UNSCORED:
            failed[positions[r["prompt_id"]]] += 1
        else:
            by_pid[r["prompt_id"]].append(r)
    groups = []
    for pid, mine in by_pid.items():
        versions = [r["policy_version"] for r in mine] or [0]
        last = [r.get("policy_version_last", r["policy_version"]) for r in mine] or [0]
        groups.append(Group(positions[pid], pid, mine, min(versions), max(last), now))
    return groups, failed
