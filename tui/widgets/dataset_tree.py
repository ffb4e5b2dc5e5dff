"""A tree of datasets, files, directories, trees and branches, filterable and with vim keys.

The tree is built from the dictionaries of ``FileStructure.to_dict()``
(``{path, format, size_bytes, error, objects: [{path, kind, entries, branches}]}``),
so it needs no uproot import of its own.
"""

from __future__ import annotations

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
        self._datasets: list[tuple[Path, list[dict[str, Any]]]] = []

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
        self._datasets = datasets
        self.apply_filter(needle)

    def apply_filter(self, needle: str) -> int:
        """Rebuild the tree with only the branches whose name contains ``needle`` and return how many are shown.

        Objects whose path contains ``needle`` stay listed. An empty ``needle`` shows everything.
        """
        needle = needle.strip().lower()
        self.clear()
        shown = 0
        for dataset_path, files in self._datasets:
            dataset_node = self.root.add(
                Text.assemble((str(dataset_path), "bold"), f"  {len(files)} file(s)"),
                data=NodeInfo("dataset", file=dataset_path),
                expand=True,
            )
            for structure in files:
                shown += self._add_file(dataset_node, structure, needle, expand_files=len(files) <= 3)
        if self.root.children:
            self.move_cursor(self.root.children[0])
        return shown

    def _add_file(self, parent: TreeNode[NodeInfo], structure: dict[str, Any], needle: str, expand_files: bool) -> int:
        path = Path(structure.get("path", "?"))
        label = Text.assemble(
            (path.name, "bold"),
            f"  {structure.get('format', '?')}, {format_bytes(structure.get('size_bytes'))}",
        )
        if structure.get("error"):
            label.append("  unreadable", style="bold red")
        file_node = parent.add(label, data=NodeInfo("file", file=path, details=structure), expand=bool(needle) or expand_files)
        shown = 0
        for obj in structure.get("objects") or []:
            branches = [b for b in obj.get("branches") or [] if not needle or branch_matches(b, needle)]
            if needle and not branches and needle not in str(obj.get("path", "")).lower():
                continue
            entries = obj.get("entries")
            object_label = Text.assemble(
                (str(obj.get("path", "?")), "cyan"),
                f"  {obj.get('kind', '?')}",
                f", {entries:,} entries" if isinstance(entries, int) else "",
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
