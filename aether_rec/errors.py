"""The error hierarchy. One root, mixed with ValueError like msgpack's, so callers can
catch every aether-rec problem at once; the CLI turns each into a one-line message."""

from __future__ import annotations


class AetherError(Exception):
    """Root of every error aether-rec raises on purpose."""

    exit_code = 1


class UsageError(AetherError, ValueError):
    """The caller asked for something malformed (bad expression, bad unit...)."""

    exit_code = 2


class CaptureError(AetherError, ValueError):
    """A capture cannot be read. ``reason`` says why, ``path`` (when known) which file;
    ``str()`` is ``"path: reason"``. Callers decide on the attributes, never on the text."""

    def __init__(self, reason: str, path: str | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(f"{path}: {reason}" if path else reason)

    def at(self, path: str) -> CaptureError:
        """This error about file ``path`` (itself when it already names a file)."""
        if self.path is not None:
            return self
        return type(self)(self.reason, path)


class NotACaptureError(CaptureError):
    """The file does not start with the .aio magic."""


class VersionError(CaptureError):
    """The capture's major version is newer than this reader."""


class DamagedCaptureError(CaptureError):
    """A block is truncated, has a bad checksum or an impossible field."""


class LimitError(DamagedCaptureError):
    """A declared size is beyond what readers accept (see format/SPEC.md, Limits)."""


class RecorderError(AetherError):
    """Recording could not start or had to stop."""


class EnvironmentProblem(RecorderError):
    """The machine lacks something recording needs; the message says how to fix it."""
