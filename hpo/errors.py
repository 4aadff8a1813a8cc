"""The one error type users see for bad input: it names the config key and the fix."""


class ConfigError(ValueError):
    """Bad input found before any trial starts. ``str(err)`` is one line: ``key: problem; fix``."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message
