"""Repository-wide pytest configuration (the plugin itself is loaded by its entry point)."""
