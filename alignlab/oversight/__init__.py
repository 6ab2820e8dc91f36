"""Scalable oversight over the LM interface: methods that help check or supervise a model's answers (issue #21).

Each protocol runs on any :class:`alignlab.evaluate.interface.LM` — a local model, a world model, or a server —
parses model outputs strictly and reports how many it could not parse next to every result.
"""
