"""Checkpoint formats: Hugging Face directories, Google TF checkpoints (key tables as data)."""
