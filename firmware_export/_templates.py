"""Fill the bundle templates shipped in ``firmware_export/templates/``.

A template is a plain file with ``{{name}}`` placeholders (names are word characters). Every
placeholder must get a value and every value must be used, so a template and its caller cannot
silently drift apart.
"""

from __future__ import annotations

import re
from importlib import resources

from search.errors import ExportError

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def template_text(name: str) -> str:
    """The text of ``templates/<name>`` (e.g. ``"tflm/main.cc"``)."""
    path = resources.files("firmware_export").joinpath("templates", *name.split("/"))
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError(f"bundle template {name} is missing from the installed package") from None


def render(name: str, values: dict[str, object]) -> str:
    """``templates/<name>`` with each ``{{key}}`` replaced by ``str(values[key])``."""
    text = template_text(name)
    wanted = set(_PLACEHOLDER.findall(text))
    missing = sorted(wanted - set(values))
    unused = sorted(set(values) - wanted)
    if missing or unused:
        raise ExportError(
            f"template {name}: expected values for exactly {sorted(wanted)}, missing {missing}, unused {unused}"
        )
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)
