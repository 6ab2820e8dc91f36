"""``alignlab.experiments``: the demo and the benches — compositions of methods, the world and evaluation.

Experiments import methods; no method imports an experiment (``tests/test_layering.py`` checks it).

- :mod:`alignlab.experiments.demo`: ``alignlab demo``, the whole pipeline on the toy world;
- :mod:`alignlab.experiments.bench`: ``alignlab bench methods --world``, every offline method;
- :mod:`alignlab.experiments.online_bench`: ``alignlab bench online --world``, every online method.
"""
