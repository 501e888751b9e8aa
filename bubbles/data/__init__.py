"""Frame stores, ingest, synthetic flows and windows: the data side of the domain."""
