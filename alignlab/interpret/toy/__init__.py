"""Toy models of mechanistic interpretability, each trained on this CPU in minutes with a measured finding.

- :mod:`~alignlab.interpret.toy.attention_only`: attention-only transformers and the induction-head phase change
- :mod:`~alignlab.interpret.toy.circuits`: QK/OV circuits in token space, copying and composition scores
- :mod:`~alignlab.interpret.toy.superposition`: Elhage et al.'s superposition toy models, sweeps and phase diagram
- :mod:`~alignlab.interpret.toy.solu`: the SoLU activation for alignlab's (Llama) models, against GELU
- :mod:`~alignlab.interpret.toy.sae`: sparse autoencoders (L1 and TopK) on any hook point, with SAELens's metrics
"""
