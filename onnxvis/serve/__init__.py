"""onnxvis serve: the ASGI app (app), what the page shows (explorer), the page itself (static/)."""
