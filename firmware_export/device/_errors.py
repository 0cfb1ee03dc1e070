"""The error of the device checks: a build, a tool or an emulated run that did not succeed."""

from __future__ import annotations

from search.errors import ExportError


class DeviceError(ExportError):
    """A TFLite Micro tree, compiler or QEMU is missing, or a build or an emulated run failed."""
