"""The built-in backends. Each registers through the same hook a third-party plugin uses."""
