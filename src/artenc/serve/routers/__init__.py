"""HTTP routers: `api` (JSON under /api/) and `pages` (the HTML page)."""
