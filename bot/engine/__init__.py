"""The pure dialogue engine: state in, turn out; no I/O."""
