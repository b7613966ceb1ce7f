"""`falconchat serve`: the bundled or a local model behind a TGI-compatible HTTP API."""
