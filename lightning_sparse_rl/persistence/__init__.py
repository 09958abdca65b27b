"""What outlives a process: checkpoint files, state encoding, generator states, run files, the run lock, resumes."""
