"""`artenc serve`: a FastAPI web page and JSON API over one embedding store.

Layout: `app.create_app` wires everything (routers, middleware, static files);
`state.ServeState` holds what is loaded once (store, index, encoder, thumbnails) and is
injected into endpoints with `Depends` (`deps`); `engine.QueryEngine` encodes uploads
and searches in micro-batches on one worker thread; `routers/api.py` is the JSON API
under `/api/`, `routers/pages.py` the HTML page. FastAPI is imported only here, so the
rest of artenc works without the `serve` extra.
"""
