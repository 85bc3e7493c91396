"""A write whose outcome was lost is reported, not resent: a blind resend could undo a later write.

The failing sequence (simulator seed 401, ``--workload rangekv --nodes 5``): a
put timed out while a partition held its entry back, the client resent it, the
first copy applied, another client's put of the same key applied after it, and
then the resent copy applied: reads went back to the older value.
"""

from __future__ import annotations

import pytest
import trio

from examples.rangekv.client import AmbiguousWriteError, LinkError, RangeClient
from examples.rangekv.descriptor import RangeDescriptor
from examples.rangekv.protocol import Unavailable, WriteRequest

_RANGE = RangeDescriptor(1, b"", None, replicas=(1,))


class ScriptedLink:
    """Answers write requests from a script (a reply, or a LinkError to raise), then None."""

    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.writes: list[WriteRequest] = []
        self.node_ids = [1]

    async def call(self, node_id: int, request: object) -> object:
        assert isinstance(request, WriteRequest)
        self.writes.append(request)
        await trio.lowlevel.checkpoint()
        answer = self.script.pop(0) if self.script else None
        if isinstance(answer, LinkError):
            raise answer
        return answer


def _client(link: ScriptedLink) -> RangeClient:
    client = RangeClient(link, timeout=5.0, retry_delay=0.001)  # type: ignore[arg-type]
    client.cache.update(_RANGE)
    return client


@pytest.mark.parametrize(
    "lost",
    [
        Unavailable("proposal timed out", ambiguous=True),
        LinkError(1, "connection lost", ambiguous=True),
    ],
    ids=["timed-out proposal", "connection lost after sending"],
)
@pytest.mark.parametrize("write", ["put", "delete"])
async def test_a_write_whose_outcome_was_lost_raises_and_is_sent_once(
    lost: object, write: str
) -> None:
    link = ScriptedLink([lost])
    client = _client(link)
    with pytest.raises(AmbiguousWriteError):
        if write == "put":
            await client.put(b"k", b"v")
        else:
            await client.delete(b"k")
    assert len(link.writes) == 1


@pytest.mark.parametrize(
    "refused",
    [Unavailable("dropped: no leader"), LinkError(1, "down")],
    ids=["dropped proposal", "node down before sending"],
)
async def test_a_write_that_surely_did_not_apply_is_sent_again(refused: object) -> None:
    link = ScriptedLink([refused])
    client = _client(link)
    await client.put(b"k", b"v")
    assert [w.range_id for w in link.writes] == [1, 1]
