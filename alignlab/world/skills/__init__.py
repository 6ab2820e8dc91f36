"""The toy world's skills for scalable oversight: step-by-step arithmetic, critique, revision, refinement, judgement
and confidence — generated, graded and learned imperfectly, at known rates (see docs/world.md, "Skills").

Only the ``oversight`` world size writes them into the corpus and datasets; ``small`` and ``medium`` are unchanged.
"""
