"""Outer alignment: making the training objective say what we want (preference losses, RLHF, oversight)."""
