"""Mechanistic interpretability on any Hugging Face decoder: hook points with TransformerLens's names on the
plain modules, activation cache, patching and ablation, logit lens and attention-head scores."""
