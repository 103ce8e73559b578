"""Job ids: valid UUIDv7, strictly increasing within a process, whatever the clock does."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from tickq.engine.ids import IdGenerator

#: seconds since the epoch, with clock steps forward, backward and within one millisecond
TIMES = st.lists(st.floats(min_value=1.0e9, max_value=4.0e12 / 1000, allow_nan=False),
                 min_size=1, max_size=200)


@given(TIMES)
def test_ids_are_uuid7_increasing_and_carry_the_latest_millisecond(times: list[float]) -> None:
    ids = IdGenerator()
    previous: str | None = None
    latest_ms = -1
    for now in times:
        made = ids.new(now)
        parsed = uuid.UUID(made)
        assert str(parsed) == made
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        latest_ms = max(latest_ms, int(now * 1000))
        # the timestamp never goes back: a clock step backwards keeps counting the last one
        assert parsed.int >> 80 == latest_ms & 0xFFFFFFFFFFFF
        if previous is not None:
            assert made > previous  # text order is creation order
        previous = made


def test_a_burst_within_one_millisecond_counts_up() -> None:
    ids = IdGenerator()
    made = [ids.new(1_800_000_000.0005) for _ in range(10_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert len({m[:15] for m in made}) == 1  # one millisecond, one prefix



class _Chosen:
    """A random source that starts a millisecond's counter where the test says."""

    def __init__(self, start: int) -> None:
        self.start = start

    def getrandbits(self, bits: int) -> int:
        return self.start


@given(st.integers(min_value=0, max_value=(1 << 25) - 1), st.integers(min_value=0, max_value=40),
       st.integers(min_value=1, max_value=80))
def test_ids_formatted_from_the_last_group_match_the_whole_counter(high: int, below: int,
                                                                   steps: int) -> None:
    # Within a millisecond only the last 12 digits are formatted anew until the counter
    # carries out of them; start just below such a carry and check every id against the
    # counter it must spell.
    start = (high << 48) | ((1 << 48) - 1 - below)
    ids = IdGenerator()
    ids._rng = _Chosen(start)  # type: ignore[assignment]
    made = [ids.new(1_800_000_000.0) for _ in range(steps)]
    for offset, text in enumerate(made):
        value = uuid.UUID(text).int
        assert str(uuid.UUID(text)) == text
        assert (value >> 80) == 1_800_000_000_000
        counter = ((value >> 64) & 0xFFF) << 62 | (value & ((1 << 62) - 1))
        assert counter == start + offset
    assert made == sorted(made)
