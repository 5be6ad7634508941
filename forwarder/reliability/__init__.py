"""What keeps events from being lost or sent twice: the failure store and replay, continuations, idempotency."""
