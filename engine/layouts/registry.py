"""Layout definitions, loading from TOML, and detection from branch names."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cmsgen.engine.errors import ConfigError

# Canonical per-object fields. ``pdg_id`` is only an input (it gives charge and species).
CANONICAL_FIELDS = ("pt", "eta", "phi", "mass", "charge")
CARTESIAN_FIELDS = ("energy", "px", "py", "pz")
INPUT_FIELDS = CANONICAL_FIELDS + CARTESIAN_FIELDS + ("pdg_id",)
COLLECTIONS = ("muons", "electrons", "photons", "jets", "taus", "leptons")
EVENT_FIELDS = ("run", "luminosityBlock", "event")
MET_FIELDS = ("pt", "phi", "px", "py")
COLLECTION_KINDS = ("flat", "jagged")


@dataclass(frozen=True)
class FieldSpec:
    """Where one canonical field is stored: a branch name (or template) and an optional transform.

    ``scale`` multiplies the stored value, because EDM's ``qx3_`` stores three
    times the charge. ``first`` takes the first element of a per-event list,
    because EDM's MET is a one-element vector.
    """

    branch: str
    scale: float = 1.0
    first: bool = False

    def expand(self, index: int | None) -> str:
        return self.branch.replace("{i}", str(index)) if index is not None else self.branch


@dataclass(frozen=True)
class CollectionSpec:
    """One collection of physics objects in a layout."""

    name: str
    kind: str
    fields: dict[str, FieldSpec]
    species: str | None = None
    counter: str | None = None
    indices: tuple[int, ...] = ()
    tree: str | None = None
    split_by_pdg_id: bool = False

    def branches(self) -> dict[str, list[str]]:
        """Return, per canonical field, the concrete branch names this collection reads."""
        if self.kind == "flat":
            return {name: [spec.expand(i) for i in self.indices] for name, spec in self.fields.items()}
        return {name: [spec.branch] for name, spec in self.fields.items()}


@dataclass(frozen=True)
class Layout:
    """A legacy naming scheme and how it maps onto the canonical event."""

    name: str
    description: str
    required: tuple[str, ...]
    collections: dict[str, CollectionSpec]
    event: dict[str, FieldSpec] = field(default_factory=dict)
    event_tree: str | None = None
    met: dict[str, FieldSpec] = field(default_factory=dict)
    met_tree: str | None = None
    event_observables: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    edm: bool = False
    source: str = "built-in"

    def trees(self) -> set[str | None]:
        """Return the tree paths this layout reads; ``None`` is the dataset's main tree."""
        names: set[str | None] = {spec.tree for spec in self.collections.values()}
        if self.event:
            names.add(self.event_tree)
        if self.met:
            names.add(self.met_tree)
        return names


@dataclass(frozen=True)
class LayoutChoice:
    """The layout chosen for a file, with the reason in one sentence."""

    layout: Layout
    reason: str
    matched: tuple[str, ...]


def _field_spec(key: str, value: Any, where: str) -> FieldSpec:
    if isinstance(value, str):
        return FieldSpec(value)
    if isinstance(value, dict) and isinstance(value.get("branch"), str):
        unknown = set(value) - {"branch", "scale", "first"}
        if unknown:
            raise ConfigError(f"{where}: unknown option {sorted(unknown)[0]!r} for field {key!r}; allowed: branch, scale, first.")
        return FieldSpec(value["branch"], float(value.get("scale", 1.0)), bool(value.get("first", False)))
    raise ConfigError(
        f"{where}: field {key!r} = {value!r} is invalid; expected a branch name or a table "
        "{{ branch = \"...\", scale = 1.0, first = false }}."
    )


def parse_layout(data: dict[str, Any], source: str) -> Layout:
    """Build a Layout from the parsed TOML table, validating every key."""
    allowed = {"name", "description", "priority", "detect", "event", "event_observables", "collections", "met", "edm"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"{source}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(allowed))}.")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: the layout needs a non-empty string 'name'.")
    required = data.get("detect", {}).get("required", [])
    if not isinstance(required, list) or not required or not all(isinstance(r, str) for r in required):
        raise ConfigError(f"{source}: 'detect.required' must be a non-empty list of branch names.")

    collections: dict[str, CollectionSpec] = {}
    for collection_name, table in data.get("collections", {}).items():
        where = f"{source}: collections.{collection_name}"
        if collection_name not in COLLECTIONS:
            raise ConfigError(f"{where}: unknown collection; allowed: {', '.join(COLLECTIONS)}.")
        kind = table.get("kind", "jagged")
        if kind not in COLLECTION_KINDS:
            raise ConfigError(f"{where}: kind = {kind!r} is invalid; allowed: flat, jagged.")
        fields = {}
        for key, value in table.get("fields", {}).items():
            if key not in INPUT_FIELDS:
                raise ConfigError(f"{where}: unknown field {key!r}; allowed: {', '.join(INPUT_FIELDS)}.")
            fields[key] = _field_spec(key, value, where)
        raw_indices = table.get("indices", ())
        if not isinstance(raw_indices, list | tuple) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw_indices):
            raise ConfigError(f"{where}: indices = {raw_indices!r} is invalid; give a list of integers, for example [1, 2].")
        indices = tuple(raw_indices)
        if kind == "flat" and not indices:
            raise ConfigError(f"{where}: a flat collection needs 'indices', for example [1, 2].")
        collections[collection_name] = CollectionSpec(
            name=collection_name,
            kind=kind,
            fields=fields,
            species=table.get("species"),
            counter=table.get("counter"),
            indices=indices,
            tree=table.get("tree"),
            split_by_pdg_id=bool(table.get("split_by_pdg_id", False)),
        )

    event_table = dict(data.get("event", {}))
    event_tree = event_table.pop("tree", None)
    for key in event_table:
        if key not in EVENT_FIELDS:
            raise ConfigError(f"{source}: event.{key} is unknown; allowed: {', '.join(EVENT_FIELDS)}, tree.")
    met_table = dict(data.get("met", {}))
    met_tree = met_table.pop("tree", None)
    for key in met_table:
        if key not in MET_FIELDS:
            raise ConfigError(f"{source}: met.{key} is unknown; allowed: {', '.join(MET_FIELDS)}, tree.")

    return Layout(
        name=name,
        description=str(data.get("description", "")),
        required=tuple(required),
        collections=collections,
        event={k: _field_spec(k, v, f"{source}: event") for k, v in event_table.items()},
        event_tree=event_tree,
        met={k: _field_spec(k, v, f"{source}: met") for k, v in met_table.items()},
        met_tree=met_tree,
        event_observables={str(k): str(v) for k, v in data.get("event_observables", {}).items()},
        priority=int(data.get("priority", 0)),
        edm=bool(data.get("edm", False)),
        source=source,
    )


def load_layout_file(path: str | Path) -> Layout:
    """Load a user layout from a TOML file; raise ConfigError naming the file when it is invalid."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Layout file {path} not found; check the path.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"Layout file {path} is not valid TOML ({error}); fix the syntax.") from None
    layout = parse_layout(data, str(path))
    return Layout(**{**layout.__dict__, "source": str(path)})


def _user_layout_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("CMSGEN_LAYOUT_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".config" / "cmsgen-tui" / "layouts")
    return dirs


def available_layouts(extra_files: tuple[str | Path, ...] = ()) -> list[Layout]:
    """Return the built-in layouts, the user's layouts, and layouts from extra files."""
    layouts: dict[str, Layout] = {}
    for entry in sorted(resources.files("cmsgen.engine.layouts").joinpath("builtin").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            layout = parse_layout(tomllib.loads(entry.read_text(encoding="utf-8")), f"built-in {entry.name}")
            layouts[layout.name] = layout
    for directory in _user_layout_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                layout = load_layout_file(path)
                layouts[layout.name] = layout
    for path in extra_files:
        layout = load_layout_file(path)
        layouts[layout.name] = layout
    return list(layouts.values())


def get_layout(name: str, extra_files: tuple[str | Path, ...] = ()) -> Layout:
    """Return the layout called ``name``; raise ConfigError listing the known names."""
    layouts = {layout.name: layout for layout in available_layouts(extra_files)}
    if name not in layouts:
        raise ConfigError(f"Layout {name!r} is unknown; available layouts: {', '.join(sorted(layouts))}.")
    return layouts[name]


def detect_layout(branches: set[str], layouts: list[Layout]) -> LayoutChoice | None:
    """Choose the layout whose required branches are all present, preferring the most specific.

    ``branches`` contains the branch names of the main tree and, for files with
    several trees, names written ``tree/path:branch``. Ties on priority go to the
    layout that maps more of the present branches.
    """
    candidates = []
    for layout in layouts:
        if all(name in branches for name in layout.required):
            mapped = sorted(
                {b for spec in layout.collections.values() for names in spec.branches().values() for b in names if b in branches}
            )
            candidates.append((layout.priority, len(mapped), layout, mapped))
    if not candidates:
        return None
    candidates.sort(key=lambda item: (item[0], item[1]), reverse=True)
    _, _, layout, mapped = candidates[0]
    shown = ", ".join(layout.required)
    reason = f"branches {shown} are present, which identifies the {layout.name} layout ({layout.source})"
    others = [c[2].name for c in candidates[1:]]
    if others:
        reason += f"; it is more specific than {', '.join(others)}"
    return LayoutChoice(layout=layout, reason=reason, matched=tuple(mapped))
