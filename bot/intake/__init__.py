"""The intake: the turn and what it produces (reports, references), over the pure engine."""
