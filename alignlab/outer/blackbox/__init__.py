"""Black-box steering: small policy LMs trained to steer a frozen LM through its prompt (DSP hints, RL4F critiques)."""
