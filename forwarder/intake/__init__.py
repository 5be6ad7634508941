"""Wire formats and the HTTP client that delivers batches to the intake."""
