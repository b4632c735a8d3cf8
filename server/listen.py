"""``subscriptions/listen`` (2026-07-28): the SDK's ``ListenHandler`` contract, served through :mod:`server.push`.

As in the SDK, the stream acknowledges the honoured filter first, stamps every frame with the listen request's id
and carries only the changes the client asked for; publishers never wait for it. Beyond the SDK (which ends a
stream at a full backlog but leaves its handler wedged in a transport write, holding the backlog and its bus
subscription until the socket dies): a stream keeps at most ``queue_max`` changes (oldest dropped, counted), a
stream whose client takes nothing for ``stall_seconds`` is ended and everything it held released, and a change to
one tenant's resources reaches only streams whose key may read that tenant.
"""

from __future__ import annotations

import logging
from typing import Any

import mcp.types as types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import SUBSCRIPTION_ID_META_KEY, ServerEvent, event_matches, event_to_notification

from server.push import Outbox, PushStats, Stalled, change_key, may_see, send_within
from tools.access import current_caller

logger = logging.getLogger(__name__)
MAX_STREAMS = 1024  # open listen streams (as the SDK's default)


class ListenStreams:
    """The request handler of ``subscriptions/listen``; one call serves one stream until the client goes."""

    def __init__(self, bus: SubscriptionBus, *, queue_max: int, stall_seconds: float, stats: PushStats) -> None:
        self._bus = bus
        self._queue_max = queue_max
        self._stall = stall_seconds
        self._stats = stats
        self._open: set[Outbox[ServerEvent]] = set()

    def __len__(self) -> int:
        return len(self._open)

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        subscription_id = ctx.request_id
        if subscription_id is None:
            raise MCPError(types.INVALID_REQUEST, "subscriptions/listen requires a request id")
        if len(self._open) >= MAX_STREAMS:
            raise MCPError(types.INTERNAL_ERROR, "Subscription limit reached")
        caller = current_caller()  # the stream's key: a tenant's changes reach only keys that may read that tenant
        honored = _honoured(params.notifications)
        uris = frozenset(honored.resource_subscriptions or ())
        meta: dict[str, Any] = {SUBSCRIPTION_ID_META_KEY: subscription_id}
        outbox = Outbox[ServerEvent](self._queue_max, "listen", self._stats, key=change_key)

        def deliver(event: ServerEvent) -> None:
            if event_matches(honored, uris, event) and may_see(caller, event):
                outbox.put(event)

        # Subscribed before the ack is written, so a change published meanwhile waits in the outbox, not lost.
        unsubscribe = self._bus.subscribe(deliver)
        self._open.add(outbox)
        try:
            ack = types.SubscriptionsAcknowledgedNotification(
                params=types.SubscriptionsAcknowledgedNotificationParams(notifications=honored, _meta=meta)
            )
            await send_within(self._stall, ctx.session.send_notification(ack, related_request_id=subscription_id))
            while True:
                notification = event_to_notification(await outbox.get(), meta)
                sending = ctx.session.send_notification(notification, related_request_id=subscription_id)
                await send_within(self._stall, sending)
        except Stalled:
            self._stats.cut["listen"] += 1
            logger.warning(
                "ended a listen stream of %r: it took no notification for %g s (%d changes were dropped for it)",
                caller.name, self._stall, outbox.dropped,
            )  # fmt: skip
            raise MCPError(
                types.INTERNAL_ERROR,
                f"this listen stream took no notification for {self._stall:g} s and was ended; listen again and "
                "re-read the resources you follow",
            ) from None
        finally:
            unsubscribe()
            self._open.discard(outbox)
            outbox.close()


def _honoured(requested: types.SubscriptionFilter) -> types.SubscriptionFilter:
    """What the stream will deliver, for the ack: every requested kind, without echoing false flags or no URIs."""
    return types.SubscriptionFilter(
        tools_list_changed=True if requested.tools_list_changed else None,
        prompts_list_changed=True if requested.prompts_list_changed else None,
        resources_list_changed=True if requested.resources_list_changed else None,
        resource_subscriptions=list(requested.resource_subscriptions) if requested.resource_subscriptions else None,
    )
