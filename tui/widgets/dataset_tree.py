"""A tree of datasets, files, directories, trees and branches, filterable and with vim keys.

The tree is built from the dictionaries of ``FileStructure.to_dict()``
(``{path, format, size_bytes, error, objects: [{path, kind, entries, branches}]}``),
so it needs no uproot import of its own. Files can be added one at a time while
they are read (``add_dataset``, ``set_file_count``, ``add_file``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode


@dataclass(frozen=True)
class NodeInfo:
    """Data of one tree node: a dataset, a file, an object (tree, RNTuple, table) or a branch."""

    kind: str
    file: Path | None = None
    object_path: str | None = None
    branch: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def histogram_key(self) -> tuple[str, str, str] | None:
        """Key (file, object path, branch) of a readable leaf branch, or None for every other node."""
        if self.kind != "branch" or self.file is None or self.object_path is None or self.branch is None:
            return None
        if not self.details.get("readable", True) or self.details.get("children"):
            return None
        return (str(self.file), self.object_path, self.branch)


def plural(count: int, word: str) -> str:
    """Return ``count`` and ``word``, with an "s" added unless ``count`` is 1 ("1 entry", "3 branches")."""
    if count == 1:
        return f"{count:,} {word}"
    irregular = {"entry": "entries", "branch": "branches"}
    return f"{count:,} {irregular.get(word, word + 's')}"


def format_bytes(size: object) -> str:
    """Format a byte count as B, kB, MB or GB (decimal units)."""
    if not isinstance(size, (int, float)):
        return "?"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def branch_matches(branch: dict[str, Any], needle: str) -> bool:
    """Return whether the name of the branch or of one of its sub-branches contains ``needle``.

    Names are lowercased before the test, so ``needle`` must be lower case.
    """
    if needle in str(branch.get("name", "")).lower():
        return True
    return any(branch_matches(child, needle) for child in branch.get("children") or [])


@dataclass
class DatasetEntry:
    """Dataset of the tree, with its path, the structures of the files read so far and its number of files."""

    path: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    n_files: int | None = None  # None while the files are still being listed
    error: str | None = None  # the reason the files cannot be listed
    node: TreeNode[NodeInfo] | None = None

    @property
    def complete(self) -> bool:
        return self.n_files is not None and len(self.files) >= self.n_files

    def label(self) -> Text:
        if self.error is not None:
            return Text.assemble((str(self.path), "bold"), ("  unreadable", "bold red"))
        if self.n_files is None:
            status = "listing files…"
        elif self.complete:
            status = plural(self.n_files, "file")
        else:
            status = f"{len(self.files)} of {plural(self.n_files, 'file')} read…"
        return Text.assemble((str(self.path), "bold"), f"  {status}")


class DatasetTree(Tree[NodeInfo]):
    """Tree of the Files screen, in which j/k/h/l move like the arrow keys."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("h", "collapse_or_parent", "Collapse", show=False),
        Binding("l", "expand_or_child", "Expand", show=False),
        Binding("left", "collapse_or_parent", "Collapse", show=False),
        Binding("right", "expand_or_child", "Expand", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("Datasets", data=NodeInfo("root"), id=id)
        self.show_root = False
        self.guide_depth = 2
        self._datasets: list[DatasetEntry] = []
        self._needle = ""

    def action_collapse_or_parent(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            node.collapse()
        elif node.parent is not None and node.parent is not self.root:
            self.move_cursor(node.parent)

    def action_expand_or_child(self) -> None:
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if not node.is_expanded:
            node.expand()
        elif node.children:
            self.move_cursor(node.children[0])

    def set_datasets(self, datasets: list[tuple[Path, list[dict[str, Any]]]], needle: str = "") -> None:
        """Replace the tree content with ``datasets``, a list of (dataset path, file structures) pairs."""
        self._datasets = [DatasetEntry(path, list(files), len(files)) for path, files in datasets]
        self.apply_filter(needle)

    def add_dataset(self, path: Path) -> int:
        """Append a dataset whose files are not listed yet and return its index for ``add_file``."""
        entry = DatasetEntry(Path(path))
        self._datasets.append(entry)
        self._add_dataset_node(entry)
        if len(self._datasets) == 1:
            self.move_cursor(entry.node)
        return len(self._datasets) - 1

    def set_file_count(self, index: int, n_files: int) -> None:
        """Record how many files dataset ``index`` has, once its paths are listed."""
        entry = self._datasets[index]
        entry.n_files = n_files
        if entry.node is not None:
            entry.node.set_label(entry.label())

    def set_dataset_error(self, index: int, error: str) -> None:
        """Mark dataset ``index`` as one whose files cannot be listed, for the reason ``error``."""
        entry = self._datasets[index]
        entry.error = error
        entry.n_files = 0
        if entry.node is not None:
            entry.node.set_label(entry.label())
            entry.node.data = NodeInfo("dataset", file=entry.path, details={"error": error})
            entry.node.allow_expand = False

    def dataset_count(self) -> int:
        return len(self._datasets)

    def file_count(self) -> int:
        """Return how many files of every dataset are read so far."""
        return sum(len(entry.files) for entry in self._datasets)

    def add_file(self, index: int, structure: dict[str, Any]) -> int:
        """Add one file structure to dataset ``index`` and return how many of its branches are shown.

        Files may arrive in any order and are kept sorted by path. The cursor
        stays on its node, so files can arrive while the user browses.
        """
        entry = self._datasets[index]
        path = str(structure.get("path", ""))
        position = bisect.bisect([str(item.get("path", "")) for item in entry.files], path)
        entry.files.insert(position, structure)
        if entry.node is None:
            return 0
        entry.node.set_label(entry.label())
        following = [child for child in entry.node.children if child.data is not None and str(child.data.file) > path]
        before = following[0] if following else None
        return self._add_file(entry.node, structure, self._needle, expand_files=self._expand_files(entry), before=before)

    def apply_filter(self, needle: str) -> int:
        """Rebuild the tree with only the branches whose name contains ``needle`` and return how many are shown.

        Objects whose path contains ``needle`` stay listed. An empty ``needle`` shows everything.
        """
        self._needle = needle.strip().lower()
        self.clear()
        shown = 0
        for entry in self._datasets:
            self._add_dataset_node(entry)
            for structure in entry.files:
                shown += self._add_file(entry.node, structure, self._needle, expand_files=self._expand_files(entry))
        if self.root.children:
            self.move_cursor(self.root.children[0])
        return shown

    def _add_dataset_node(self, entry: DatasetEntry) -> None:
        info = NodeInfo("dataset", file=entry.path, details={"error": entry.error} if entry.error else {})
        if entry.error is not None:
            entry.node = self.root.add_leaf(entry.label(), data=info)
        else:
            entry.node = self.root.add(entry.label(), data=info, expand=True)

    @staticmethod
    def _expand_files(entry: DatasetEntry) -> bool:
        # Files of a small dataset start expanded. A dataset still being listed counts as large.
        return entry.n_files is not None and entry.n_files <= 3

    def _add_file(
        self,
        parent: TreeNode[NodeInfo],
        structure: dict[str, Any],
        needle: str,
        expand_files: bool,
        before: TreeNode[NodeInfo] | None = None,
    ) -> int:
        path = Path(structure.get("path", "?"))
        label = Text.assemble(
            (path.name, "bold"),
            f"  {structure.get('format', '?')}, {format_bytes(structure.get('size_bytes'))}",
        )
        info = NodeInfo("file", file=path, details=structure)
        if structure.get("error"):
            # A file that cannot be opened has nothing to expand, and the filter never lists it.
            label.append("  unreadable", style="bold red")
            if not needle:
                parent.add_leaf(label, data=info, before=before)
            return 0
        file_node = parent.add(label, data=info, before=before, expand=bool(needle) or expand_files)
        shown = 0
        for obj in structure.get("objects") or []:
            branches = [b for b in obj.get("branches") or [] if not needle or branch_matches(b, needle)]
            if needle and not branches and needle not in str(obj.get("path", "")).lower():
                continue
            entries = obj.get("entries")
            object_label = Text.assemble(
                (str(obj.get("path", "?")), "cyan"),
                f"  {obj.get('kind', '?')}",
                f", {plural(entries, 'entry')}" if isinstance(entries, int) else "",
            )
            object_node = file_node.add(
                object_label,
                data=NodeInfo("object", file=path, object_path=str(obj.get("path")), details=obj),
                expand=bool(needle) or len(structure.get("objects") or []) == 1,
            )
            for branch in branches:
                shown += self._add_branch(object_node, path, str(obj.get("path")), branch, needle)
        if not file_node.children and needle:
            file_node.remove()
        return shown

    def _add_branch(
        self, parent: TreeNode[NodeInfo], path: Path, object_path: str, branch: dict[str, Any], needle: str
    ) -> int:
        name = str(branch.get("name", "?"))
        label = Text.assemble(name, (f"  {branch.get('type', '')}", "dim"))
        if branch.get("readable") is False:
            label.append("  unreadable", style="bold red")
        info = NodeInfo("branch", file=path, object_path=object_path, branch=name, details=branch)
        children = [c for c in branch.get("children") or [] if not needle or branch_matches(c, needle)]
        if not children:
            parent.add_leaf(label, data=info)
            return 1
        node = parent.add(label, data=info, expand=bool(needle))
        return 1 + sum(self._add_branch(node, path, object_path, child, needle) for child in children)
