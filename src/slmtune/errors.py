"""The project's own exception types: each carries a message a user can act on."""


class SlmtuneError(Exception):
    """Base class for every error slmtune raises on purpose."""


class ConfigError(SlmtuneError):
    """A configuration key is unknown, missing or of the wrong type."""


class DataError(SlmtuneError):
    """Input data is malformed; the message names the file and line."""


class HardwareError(SlmtuneError):
    """The machine does not match the chosen hardware profile."""


class ModelError(SlmtuneError):
    """A model folder is missing, incomplete or of an unexpected kind."""


class VerificationError(SlmtuneError):
    """A stage's self-check failed (for example merged logits differ from base+adapter)."""
