"""The admin client never leaves a caller waiting for an answer that cannot arrive."""

from __future__ import annotations

import trio
import trio.testing

from multiraft.admin import open_admin_client


async def test_call_pending_when_the_client_closes_fails_at_once() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()  # a node that never answers

    failures: list[BaseException] = []
    async with trio.open_nursery() as server:
        server.start_soon(trio.serve_listeners, silent, listeners)
        with trio.fail_after(5):
            # Leaving the block closes the client while the call waits for its answer.
            async with (
                trio.open_nursery() as callers,
                open_admin_client("127.0.0.1", port) as client,
            ):

                async def caller() -> None:
                    try:
                        await client.call("ping")
                    except trio.BrokenResourceError as exc:
                        failures.append(exc)

                callers.start_soon(caller)
                await trio.testing.wait_all_tasks_blocked()
        server.cancel_scope.cancel()
    assert len(failures) == 1
    assert str(failures[0]) == "admin connection lost"
    assert isinstance(failures[0].__cause__, trio.ClosedResourceError)
