"""Adversarial attacks on aligned models: GCG suffixes, jailbreak probes, red teaming, the attack → judge pipeline
and defences (perplexity filter, adversarial training). ``alignlab attack ...`` is :mod:`alignlab.attacks.cli`."""
