"""Online RLHF: PPO, Safe RLHF, GRPO / RLOO / REINFORCE on one rollout → score → learn cycle, and the
sampling-based methods (best-of-n, RAFT, RSO, SPIN)."""
