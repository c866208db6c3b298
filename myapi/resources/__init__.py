"""One module per entity; Resource classes only. The routes are in app.py."""
