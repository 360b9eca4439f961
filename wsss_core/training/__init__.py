"""Resumable training: the shared loop, its checkpoints and learning-rate schedules."""
