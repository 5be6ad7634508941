"""Read stage: S3 bodies and CloudWatch Logs payloads in, decompressed bytes or decoded log batches out."""
