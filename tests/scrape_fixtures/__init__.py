"""Test helpers for the scraping tests: a local HTTP server and a fake Web Gallery of Art."""
