"""The env side (no algorithms): envs and their snapshots, noise features, the replay buffer, the DataModule."""
