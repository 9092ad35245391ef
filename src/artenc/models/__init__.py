"""Trainable modules: projection heads (losses and Lightning modules live beside them)."""
