"""Inner alignment as experiments you can run: environments, agents, experiments."""
