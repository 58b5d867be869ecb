"""The shared learner-step loop's parts without Ray: topping a step up with groups that carry signal,
and online DPO's step (pairs from each group, kept whole) on a stream whose buffer is the real one."""

from __future__ import annotations

from halo_ray.driver.loop import MAX_REJECTED_BATCHES, take_with_signal
from halo_ray.stream import Group, StreamBuffer


class BufferOnlyStream:
    """The two things ``take_with_signal`` and a step builder use of ``driver.stream.Stream``: its buffer
    and ``next_groups``; every issued position is scored at once by ``score(position)``."""

    def __init__(self, per_step: int, score, steps: int = 50):
        self.buffer = StreamBuffer(per_step, 0, steps)
        self.score = score

    def next_groups(self, version: int, need: int | None = None):
        for pos in self.buffer.issue(10_000):
            self.buffer.add(Group(pos, f"p{pos}", self.score(pos), version, version))
        return self.buffer.take(version, need), 0.0


def rows(pos: int, rates) -> list[dict]:
    return [{"prompt_id": f"p{pos}", "sample_index": i, "completion": f"c{pos}.{i}", "pass_rate": r, "reward": r,
             "verdict": "SUCCESS" if r == 1.0 else "WRONG_OUTPUT", "token_ids": [pos, i], "prompt_token_ids": [pos]}
            for i, r in enumerate(rates)]


def test_groups_without_signal_are_rejected_counted_and_replaced():
    stream = BufferOnlyStream(4, lambda pos: rows(pos, (1.0, 0.0) if pos % 3 == 0 else (1.0, 1.0)))
    live = lambda groups: {g.position for g in groups if len({r["pass_rate"] for r in g.rows}) > 1}  # noqa: E731
    taken, rejected, _ = take_with_signal(stream, 0, live)
    assert [g.position for g in taken] == [0, 3, 6, 9]
    assert rejected == 6 and stream.buffer.state.filtered_groups == 6
    stream.buffer.use(taken, 0)
    c = stream.buffer.state.counts
    assert c["generated"] == c["used"] + c["filtered"] + sum(g.size for g in stream.buffer.ready.values())


def test_a_task_without_signal_stops_topping_up_and_trains_on_what_it_has():
    stream = BufferOnlyStream(2, lambda pos: rows(pos, (1.0, 1.0)))
    taken, rejected, _ = take_with_signal(stream, 0, lambda groups: set())
    assert rejected == MAX_REJECTED_BATCHES * 2 and len(taken) == 2
    taken, rejected, _ = take_with_signal(BufferOnlyStream(2, lambda pos: rows(pos, (1.0, 1.0))), 0, lambda g: set(),
                                          enabled=False)
    assert rejected == 0 and [g.position for g in taken] == [0, 1]


def test_online_dpo_step_pairs_within_groups_and_keeps_each_pair_whole():
    from halo_ray.driver.online_dpo import dpo_batch
    from halo_ray.sections import OnlineDPOJobConfig, PairRuleConfig, StreamConfig

    config = OnlineDPOJobConfig(pairs=PairRuleConfig(max_pairs_per_problem=2), stream=StreamConfig(prompts_per_step=2))
    scores = {0: (1.0, 0.0, 0.5, 0.0), 1: (0.0, 0.0, 0.0, 0.0), 2: (1.0, 1.0, 0.0, 1.0)}
    stream = BufferOnlyStream(2, lambda pos: rows(pos, scores.get(pos, (0.0,) * 4)))
    batch = dpo_batch(config)(stream, 0)
    assert [g.position for g in batch.taken] == [0, 2], "the group that scored alike has no pair: replaced"
    assert batch.metrics["stream/unpaired_groups"] == 1 and batch.metrics["stream/pairs"] == 4
    assert batch.temperature == 1.0 and batch.totals == {"pairs": 4}
    ex = batch.examples
    assert len(ex) == 8 and [e["pair_role"] for e in ex] == [0, 1] * 4
    assert all(e["unit"] == e["pair_id"] for e in ex) and [e["pair_id"] for e in ex[::2]] == [0, 1, 2, 3]
    # pair 0 of group 0: sample 0 (1.0) over sample 1 (0.0); each side is that sample's own tokens
    assert ex[0]["token_ids"] == [0, 0] and ex[1]["token_ids"] == [0, 1] and ex[0]["prompt_token_ids"] == [0]
    assert batch.columns["paired"] == [True, True, True, True] + [True, True, True, False]  # (0,2), (1,2): cap 2
    assert len(batch.rows) == 8
