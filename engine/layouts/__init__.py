"""Layouts: legacy naming schemes mapped onto the canonical event.

A layout is data: a TOML file that names, for each canonical collection and
field, the branch or column that stores it. The built-in layouts are in
``builtin/``. Users add their own with ``--layout-file FILE``, or by putting
TOML files into ``$CMSGEN_LAYOUT_PATH`` (a colon-separated list of folders) or
``~/.config/cmsgen-tui/layouts``.
"""

from cmsgen.engine.layouts.registry import (
    CANONICAL_FIELDS,
    CollectionSpec,
    FieldSpec,
    Layout,
    LayoutChoice,
    available_layouts,
    detect_layout,
    get_layout,
    load_layout_file,
)

__all__ = [
    "CANONICAL_FIELDS",
    "CollectionSpec",
    "FieldSpec",
    "Layout",
    "LayoutChoice",
    "available_layouts",
    "detect_layout",
    "get_layout",
    "load_layout_file",
]
