"""The stream's bookkeeping without Ray: the staleness bound, drops, replacement, accounting, resume."""

from __future__ import annotations

import random

import pytest

from halo_ray.stream import Group, StreamBuffer, StreamState, group_rows, prompt_at


def group(pos: int, version: int, size: int = 2) -> Group:
    return Group(pos, f"p{pos}", [{"i": i} for i in range(size)], version, version)


def test_prompt_order_walks_every_prompt_once_per_epoch_independent_of_input_order():
    ids = [f"p{i}" for i in range(10)]
    seen = [prompt_at(ids, pos, 1) for pos in range(20)]
    assert sorted(seen[:10]) == sorted(ids) and sorted(seen[10:]) == sorted(ids)
    assert seen[:10] != seen[10:], "a new permutation each epoch"
    assert seen == [prompt_at(list(reversed(ids)), pos, 1) for pos in range(20)]


@pytest.mark.parametrize("k", [0, 1, 3])
def test_budget_keeps_sampling_k_steps_ahead(k):
    buf = StreamBuffer(prompts_per_step=4, max_staleness=k, total_steps=10)
    assert buf.issue(100) == list(range(4 * (k + 1)))
    for pos in range(4 * (k + 1)):
        buf.add(group(pos, 0))
    assert len(buf.take(0)) == 4
    # One step taken: nothing more is issued until the step is done (its weights synced).
    assert buf.budget() == 0
    buf.step_done()
    assert buf.issue(100) == list(range(4 * (k + 1), 4 * (k + 2)))


def test_k0_is_synchronous_every_step_samples_current_weights():
    buf, version = StreamBuffer(3, 0, total_steps=4), 0
    for step in range(4):
        positions = buf.issue(100)
        assert positions == list(range(3 * step, 3 * step + 3))
        assert buf.take(version) is None, "nothing ready yet"
        for pos in positions:
            buf.add(group(pos, version))
        taken = buf.take(version)
        assert [g.position for g in taken] == positions
        buf.use(taken, version)
        assert buf.issue(100) == [], "k = 0: the next step is not sampled while this one trains"
        version += 1
        buf.step_done()
    assert buf.state.counts == dict(generated=24, used=24, stale=0, filtered=0, failed=0)
    assert buf.state.staleness == {"0": 24}


def test_stale_groups_are_dropped_counted_and_replaced():
    buf = StreamBuffer(2, 1, total_steps=5)
    buf.issue(100)  # positions 0..3 at version 0
    buf.add(group(2, 0))
    buf.add(group(3, 0))
    taken = buf.take(0)
    assert [g.position for g in taken] == [2, 3], "ready groups go first; 0 and 1 are late"
    buf.use(taken, 0)
    buf.step_done()
    buf.step_done()  # two steps later (version 2) the late groups arrive: 2 - 0 > k = 1
    buf.add(group(0, 0))
    buf.add(group(1, 0))
    assert buf.take(2) is None
    assert buf.state.stale_groups == 2 and buf.state.counts["stale"] == 4
    again = buf.issue(100)
    # Two steps done, k = 1: up to 4 steps' groups used or outstanding; 2 were used.
    assert again == [4, 5, 6, 7, 8, 9], "dropped positions are replaced by new prompts"
    assert buf.balanced()


def test_filtered_groups_are_replaced_and_accounting_balances():
    buf = StreamBuffer(2, 0, total_steps=3)
    buf.issue(100)
    buf.add(group(0, 0), failed=1)
    buf.add(group(1, 0))
    taken = buf.take(0)
    buf.reject(taken[:1])  # e.g. GRPO: all rewards equal
    buf.use(taken[1:], 0)
    assert buf.issue(100) == [2], "one more prompt for the rejected group, before the step trains"
    c = buf.state.counts
    assert c == dict(generated=5, used=2, stale=0, filtered=2, failed=1)
    assert c["generated"] == c["used"] + c["stale"] + c["filtered"] + c["failed"]


def test_checkpoint_state_reissues_what_was_in_flight_exactly_once():
    buf = StreamBuffer(2, 1, total_steps=4)
    buf.issue(100)  # 0..3
    buf.add(group(0, 0))
    buf.add(group(1, 0))
    buf.add(group(3, 0))
    taken = buf.take(0)
    buf.use(taken, 0)
    buf.step_done()
    state = buf.checkpoint_state()
    assert state["reissue"] == [2, 3]
    resumed = StreamBuffer(2, 1, total_steps=4, state=StreamState.from_dict(state))
    assert resumed.issue(100) == [2, 3, 4, 5]
    trained = [g.position for g in taken]
    assert not set(trained) & {2, 3, 4, 5}, "nothing trained is issued again"
    # Group 3 was waiting: it is sampled again, so the saved counts leave it out and still balance.
    assert resumed.balanced() and resumed.state.counts["generated"] == 4
    for pos in (2, 3, 4, 5):
        resumed.add(group(pos, 1))
    for _ in range(2):
        resumed.use(resumed.take(1), 1)
        resumed.step_done()
    c = resumed.state.counts
    assert c["generated"] == c["used"] == 12 and resumed.balanced()


def test_group_rows_sets_failed_samples_apart_and_records_versions():
    rows = [dict(prompt_id="a", policy_version=1, policy_version_last=2, verdict="SUCCESS"),
            dict(prompt_id="a", policy_version=2, policy_version_last=2, verdict="FAILED"),
            dict(prompt_id="b", policy_version=2, policy_version_last=3, verdict="WRONG_OUTPUT")]
    groups, failed = group_rows(rows, {"a": 7, "b": 8})
    by = {g.position: g for g in groups}
    assert by[7].size == 1 and failed == {7: 1, 8: 0}
    assert (by[7].min_version, by[7].max_version, by[8].min_version, by[8].max_version) == (1, 2, 2, 3)


def test_random_schedules_always_balance_and_respect_the_bound():
    rng = random.Random(0)
    for k in (0, 1, 3):
        buf, version, steps = StreamBuffer(3, k, total_steps=6), 0, 0
        flying: list[tuple[int, int]] = []
        while steps < 6:
            flying += [(p, version) for p in buf.issue(rng.randint(1, 4))]
            rng.shuffle(flying)
            for _ in range(rng.randint(0, len(flying))):
                pos, v = flying.pop()
                buf.add(group(pos, v))
            taken = buf.take(version)
            if taken is None:
                if not flying and buf.budget() == 0:
                    raise AssertionError("stalled")
                continue
            assert all(version - g.min_version <= k for g in taken)
            buf.use(taken, version)
            version += 1
            steps += 1
            buf.step_done()
            assert buf.balanced()
