"""Forward each S3 object once, even when its notification arrives twice.

S3 notifies at least once, and Lambda retries an async invocation after an error, so the same object
can come back after it was forwarded. Powertools idempotency on DynamoDB (FORWARDER_IDEMPOTENCY_TABLE,
partition key `id`) records each object by bucket, key, version or ETag, and sequencer:

- the record is written "in progress" before reading, "completed" once every event was delivered or
  stored (or the rest handed to a continuation), and deleted if the object fails, so AWS's retry
  goes ahead;
- an "in progress" record left by a crashed or timed-out invocation expires when that invocation's
  time was up (the Lambda context is registered), so it never blocks the retry for long;
- a completed record is kept for FORWARDER_IDEMPOTENCY_EXPIRY_SECONDS (default a day).

If DynamoDB itself fails, the object is forwarded anyway: a possible duplicate beats a lost event.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from enum import Enum
from typing import Any

from forwarder.model import S3Object


class Verdict(Enum):
    DONE = "done"  # forwarded now
    NOT_DONE = "not_done"  # the work ran and did not finish; the record was removed for the retry
    DUPLICATE = "duplicate"  # forwarded earlier: not run again
    IN_PROGRESS = "in_progress"  # another invocation is on it right now: not run


class _NotDone(Exception):
    """Raised inside the guarded call so that Powertools removes the in-progress record."""


def identity(obj: S3Object) -> dict[str, str]:
    """What makes two notifications the same object write."""
    return {
        "bucket": obj.bucket,
        "key": obj.key,
        "version": obj.version_tag,
        "sequencer": obj.sequencer or "",
    }


class ObjectGuard:
    """Runs a piece of work at most once per object identity."""

    def __init__(self, table: str, expiry_seconds: int) -> None:
        from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer, IdempotencyConfig

        self._layer = DynamoDBPersistenceLayer(table_name=table)
        self._config = IdempotencyConfig(expires_after_seconds=expiry_seconds)

    def register(self, lambda_context: Any) -> None:
        """In-progress records expire when this invocation's time is up."""
        self._config.register_lambda_context(lambda_context)

    def run_once(self, obj: S3Object, work: Callable[[], bool]) -> Verdict:
        """Run `work` (True when the object is done) unless this object was already forwarded."""
        from aws_lambda_powertools.utilities.idempotency import idempotent_function
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyPersistenceLayerError,
        )

        token = uuid.uuid4().hex
        outcome: list[bool] = []

        @idempotent_function(
            data_keyword_argument="identity", persistence_store=self._layer, config=self._config, key_prefix="s3"
        )
        def guarded(identity: dict[str, str]) -> dict[str, str]:
            outcome.append(work())
            if not outcome[-1]:
                raise _NotDone
            return {"token": token}

        try:
            result = guarded(identity=identity(obj))
        except _NotDone:
            return Verdict.NOT_DONE
        except IdempotencyAlreadyInProgressError:
            return Verdict.IN_PROGRESS
        except IdempotencyPersistenceLayerError:
            if not outcome:
                outcome.append(work())
            return Verdict.DONE if outcome[-1] else Verdict.NOT_DONE
        return Verdict.DONE if result.get("token") == token else Verdict.DUPLICATE
