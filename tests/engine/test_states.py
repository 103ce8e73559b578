"""The state machine table: exactly the transitions of DESIGN.md are allowed."""

from __future__ import annotations

import itertools

import pytest

from tickq.engine.states import (
    FINAL_STATES,
    LIVE_STATES,
    TRANSITIONS,
    JobState,
    can_transition,
    check_transition,
)
from tickq.errors import IllegalTransitionError

W, A, C, F, X = (JobState.WAITING, JobState.ACTIVE, JobState.COMPLETED, JobState.FAILED,
                 JobState.CANCELLED)

ALL_PAIRS = list(itertools.product(JobState, repeat=2))
ILLEGAL = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def test_table_is_exactly_the_designed_transitions() -> None:
    assert set(TRANSITIONS) == {(W, A), (A, C), (A, W), (A, F), (W, X), (A, X), (W, F), (F, W)}
    assert all(reason.strip() for reason in TRANSITIONS.values())


@pytest.mark.parametrize(("src", "dst"), list(TRANSITIONS), ids=lambda s: s.value)
def test_every_allowed_transition_passes_check(src: JobState, dst: JobState) -> None:
    check_transition(src, dst, job_id="job-1")
    assert can_transition(src, dst)


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=lambda s: s.value)
def test_every_pair_outside_the_table_raises_illegal_transition(src: JobState,
                                                                dst: JobState) -> None:
    with pytest.raises(IllegalTransitionError) as info:
        check_transition(src, dst, job_id="job-1")

    err = info.value
    assert not can_transition(src, dst)
    assert err.code == "illegal_transition"
    assert err.job_id == "job-1"
    assert f"from {src.value} to {dst.value}" in str(err)


def test_illegal_pairs_cover_every_other_combination() -> None:
    assert len(ALL_PAIRS) == 25
    assert len(ILLEGAL) == 25 - len(TRANSITIONS)
    # no state may stay where it is, and nothing leaves completed or cancelled
    assert all((s, s) in ILLEGAL for s in JobState)
    assert all((s, d) in ILLEGAL for s in (C, X) for d in JobState)


def test_final_and_live_states_partition_the_states() -> None:
    assert {C, F, X} == FINAL_STATES
    assert {W, A} == LIVE_STATES
    assert set(JobState) == FINAL_STATES | LIVE_STATES
    # the only way out of a final state is a dead-letter retry
    assert [(s, d) for (s, d) in TRANSITIONS if s in FINAL_STATES] == [(F, W)]
