"""Faust's aiokafka consumer with two additions the worker needs.

- ``fetch_max_wait_ms``: Faust hard-codes 1,500 ms when it builds its aiokafka consumer; a
  broker whose fetch long-poll does not answer as soon as data arrives (the embedded Tansu)
  then adds up to that much to every hop. The setting ``SUPPORT_FETCH_MAX_WAIT`` sets it.
- a commit throttle: Faust's periodic commit timer (``broker_commit_interval``, 2.8 s) was
  seen firing every few milliseconds on a loaded machine (15,000 commits in two minutes of a
  catch-up), each an OffsetCommit request; periodic commits (the timer's, and Faust's commit
  every ``broker_commit_every`` acks) now happen at most once per interval, and at most once
  per ``commit_interval_now()`` when that is set: the worker commits less often while it
  catches up, so a ticket changed by many events of the backlog costs fewer changelog writes
  (commits on revocation and shutdown are never skipped).
- ``before_commit``: a coroutine the consumer awaits just before it commits input offsets
  (before Faust flushes the producer). The worker writes its ticket record cache there, so
  state is always in the changelog before the offsets that produced it are committed.

Installed with ``app.transport = KpiTransport(app.conf.broker_consumer, app, ...)`` (the
App's ``transport`` setter), so Faust builds everything else as usual.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

BeforeCommit = Callable[[], Awaitable[None]]
CommitInterval = Callable[[], float]


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.consumer, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher (aiokafka 0.14).
            consumer._fetch_max_wait_ms = wait_ms
        return consumer


class KpiConsumer(faust_aiokafka.Consumer):
    fetch_max_wait_ms: int | None = None
    before_commit: BeforeCommit | None = None
    commit_interval_now: CommitInterval | None = None
    _last_periodic_commit = 0.0

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        periodic = topics is None and start_new_transaction
        if periodic and not self.periodic_commit_due(time.monotonic()):
            return False
        result: bool = await super().commit(topics, start_new_transaction=start_new_transaction)
        return result

    def periodic_commit_due(self, now: float) -> bool:
        """Whether a periodic commit at monotonic time ``now`` goes ahead (and counts as the
        latest): once per ``commit_interval``, or per ``commit_interval_now()`` if longer."""
        interval = float(self.commit_interval)
        if self.commit_interval_now is not None:
            interval = max(interval, self.commit_interval_now())
        if now - self._last_periodic_commit < 0.9 * interval:
            return False
        self._last_periodic_commit = now
        return True

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_offsets(
        self, offsets: Mapping[TP, int], start_new_transaction: bool = True
    ) -> bool:
        if self.before_commit is not None:
            await self.before_commit()
        result: bool = await super()._commit_offsets(
            offsets, start_new_transaction=start_new_transaction
        )
        return result


class KpiTransport(faust_aiokafka.Transport):
    Consumer = KpiConsumer

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int | None = None,
        before_commit: BeforeCommit | None = None,
        commit_interval_now: CommitInterval | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.before_commit = before_commit
        self.commit_interval_now = commit_interval_now

    def create_consumer(self, callback: Any, **kwargs: Any) -> Any:
        consumer = super().create_consumer(callback, **kwargs)
        if isinstance(consumer, KpiConsumer):
            consumer.fetch_max_wait_ms = self.fetch_max_wait_ms
            consumer.before_commit = self.before_commit
            consumer.commit_interval_now = self.commit_interval_now
        return consumer
