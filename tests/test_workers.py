"""The one worker pool: a stop means no new item starts, even one already queued."""

import asyncio

import pytest

from wizardlab.llm.workers import pump


@pytest.mark.parametrize("concurrency", [1, 2, 8])
def test_stop_starts_no_queued_item(concurrency):
    done, late = [], []

    def stop():
        return len(done) >= 3

    async def handle(item):
        if stop():
            late.append(item)  # started after the stop: the bug that made a resume redo less than it should
        await asyncio.sleep(0.005)
        done.append(item)

    assert asyncio.run(pump(range(100), handle, concurrency=concurrency, stop=stop)) is True
    assert late == []
    assert 3 <= len(done) <= 3 + concurrency  # only the items already in hand at the stop land


def test_runs_everything_without_stop_and_reraises():
    seen = []

    async def handle(item):
        seen.append(item)

    assert asyncio.run(pump(range(50), handle, concurrency=4)) is False
    assert sorted(seen) == list(range(50))

    async def boom(item):
        if item == 7:
            raise ValueError("bad item 7")

    with pytest.raises(ValueError, match="bad item 7"):
        asyncio.run(pump(range(50), boom, concurrency=3))
