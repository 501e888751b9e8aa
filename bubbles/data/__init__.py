"""Frame stores, ingest, synthetic flows and windows: the data side of the domain."""

DEFAULT_STORE = "data/synthetic.zarr"  # the embedded default: `synth`'s and `inspect`'s store, the spaces' data.store
