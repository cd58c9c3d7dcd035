"""Errors the host raises for things a user can fix.

Each message is one line that says what is wrong and, where it can, what to do.
The CLI prints it as ``deepafx-rt: error: <message>`` and exits non-zero.
"""


class DeepAFxError(Exception):
    """Base class: a problem the user can fix; its text is the whole message."""


class SetupError(DeepAFxError):
    """A system library or package is missing."""


class PluginNotFound(DeepAFxError):
    """No installed plugin matches a URI or name."""


class PortNotFound(DeepAFxError):
    """A plugin has no port with that symbol."""


class InstantiationError(DeepAFxError):
    """A plugin could not be instantiated (a missing host feature, a bad rate)."""


class ChainError(DeepAFxError):
    """A chain description is inconsistent or cannot be built."""


class AudioFileError(DeepAFxError):
    """An audio file cannot be read or written."""
