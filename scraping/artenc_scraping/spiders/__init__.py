"""Spiders: `wga` (Web Gallery of Art catalogue) and `urls` (any list of image URLs)."""
