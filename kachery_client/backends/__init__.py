"""Finding and choosing a backend: the plugin registry, its cache, and selection rules."""
