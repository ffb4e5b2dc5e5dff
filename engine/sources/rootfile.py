"""Opening ROOT files with uproot: finding trees at any depth and judging branches."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uproot

from cmsgen.engine.errors import UnreadableFileError

log = logging.getLogger(__name__)

TREE_CLASSES = ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")
MAX_TYPED_BRANCHES = 2000
SIMPLE_INTERPRETATIONS = ("AsDtype", "AsJagged", "AsStrings", "AsDtypeInPlace")
# Size of the XXH3-64 checksum stored after an RNTuple page.
CHECKSUM_BYTES = 8


@dataclass(frozen=True)
class TreeInfo:
    """A TTree or RNTuple found in a ROOT file."""

    path: str
    kind: str  # "tree" or "rntuple"
    entries: int


def open_root(path: Path) -> Any:
    """Open a ROOT file with uproot; raise UnreadableFileError with a plain reason when it fails."""
    try:
        with open(path, "rb") as stream:
            magic = stream.read(4)
    except OSError as error:
        raise UnreadableFileError(f"The file {path} cannot be read ({error.strerror}); check that it exists and is readable.") from None
    if magic != b"root":
        kind = "is empty" if not magic else "is not a ROOT file (it does not start with the bytes 'root')"
        raise UnreadableFileError(f"The file {path} {kind}; check that it was not renamed, mis-copied or cut short.")
    try:
        # The memory-mapped source reads local files much faster than the default one.
        return uproot.open(path, handler=uproot.source.file.MemmapSource)
    except FileNotFoundError:
        raise UnreadableFileError(f"The file {path} does not exist; check the path.") from None
    except ValueError as error:
        text = str(error)
        if "not a ROOT file" in text:
            raise UnreadableFileError(
                f"The file {path} is not a ROOT file (its first bytes are not 'root'); check that it was not renamed or mis-copied."
            ) from None
        raise UnreadableFileError(f"The ROOT file {path} cannot be opened ({text.splitlines()[0]}); it may be truncated or corrupt.") from None
    except Exception as error:  # uproot raises many types for damaged files
        log.debug("uproot.open(%s) failed", path, exc_info=True)
        raise UnreadableFileError(
            f"The ROOT file {path} cannot be opened ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no detail'}); "
            "it may be truncated or corrupt: copy it again."
        ) from None


def list_trees(root_file: Any, path: Path) -> list[TreeInfo]:
    """List every TTree and RNTuple in the file, at any directory depth, highest cycle only."""
    try:
        classnames = root_file.classnames(recursive=True, cycle=False)
    except Exception as error:
        raise UnreadableFileError(
            f"The directory of the ROOT file {path} cannot be read ({type(error).__name__}); the file may be truncated: copy it again."
        ) from None
    trees = []
    damaged = []
    for name, classname in classnames.items():
        if classname in TREE_CLASSES:
            try:
                obj = root_file[name]
                entries = int(obj.num_entries)
            except Exception as error:
                log.warning("cannot read the header of %s in %s: %s", name, path, error)
                damaged.append(f"{'RNTuple' if 'RNTuple' in classname else 'TTree'} {name.split(';')[0]} ({describe_read_error(error)})")
                continue
            trees.append(TreeInfo(name, "rntuple" if "RNTuple" in classname else "tree", entries))
    if not trees and damaged:
        # A damaged anchor or header fails uproot's checksum assertion: the file is damaged, not empty.
        raise UnreadableFileError(
            f"The ROOT file {path} has {', '.join(damaged)} whose header cannot be read; the file is damaged: copy it again."
        )
    return trees


def branch_types(tree: Any) -> dict[str, str]:
    """Return leaf-level branch (or RNTuple field) names and their type names."""
    if not is_rntuple(tree):
        names = tree.keys(recursive=True, full_paths=False)
        if len(names) > MAX_TYPED_BRANCHES:
            # Type names of EDM products need their streamers and take seconds per
            # thousand branches, so very wide trees list names only.
            return dict.fromkeys(names, "")
        return {branch.name: branch.typename for branch in tree.itervalues(recursive=True)}
    # RNTuple: top-level fields; internal collection fields start with an underscore.
    result = {}
    for name in tree.keys():
        if "." in name or name.startswith("_"):
            continue
        try:
            result[name] = str(tree[name].typename)
        except Exception:  # noqa: BLE001 - a field type that uproot cannot name is still listed
            result[name] = ""
    return result


def is_rntuple(obj: Any) -> bool:
    """Return True for an uproot RNTuple object."""
    return "RNTuple" in type(obj).__name__


@dataclass(frozen=True)
class PageDamage:
    """The first RNTuple page whose checksum does not match its bytes: its field and a description."""

    field: str
    description: str


def damaged_rntuple_page(rntuple: Any) -> PageDamage | None:
    """Return the first RNTuple page whose checksum does not match its bytes, or None.

    An RNTuple page with a checksum (a negative element count in its page description) is
    followed by the XXH3-64 hash of its stored bytes, little-endian. uproot 5.7 checks the
    checksums of the anchor, header and footer but not those of the pages, so a damaged page
    would otherwise be read without error. Every page is read once more here, as stored
    (compressed); hashing is expected to cost far less than decompressing.
    """
    import xxhash

    try:
        columns = rntuple.column_records
        fields = rntuple.field_records
        page_lists = rntuple.page_link_list
        source = rntuple.file.source
    except AttributeError:
        # NOTE: these are uproot internals (tested with uproot 5.7); another version may name them differently.
        log.warning("cannot verify the page checksums of RNTuple %s with uproot %s", rntuple.name, uproot.__version__)
        return None
    for cluster, cluster_columns in enumerate(page_lists):
        for column, column_pages in enumerate(cluster_columns):
            for number, page in enumerate(column_pages.pages):
                if not page.has_checksum:
                    continue
                start = page.locator.offset
                size = page.locator.num_bytes
                data = source.chunk(start, start + size + CHECKSUM_BYTES).raw_data
                stored = int.from_bytes(bytes(data[size : size + CHECKSUM_BYTES]), "little")
                if len(data) == size + CHECKSUM_BYTES and xxhash.xxh3_64_intdigest(bytes(data[:size])) == stored:
                    continue
                name = fields[columns[column].field_id].field_name if column < len(columns) else f"column {column}"
                return PageDamage(name, f"page {number + 1} of field {name} in cluster {cluster + 1} does not match its checksum")
    return None


def judge_branch(branch: Any, probe: bool = True) -> str | None:
    """Return None when a TTree branch can be read, else the reason in a few words.

    The interpretation alone decides for plain numbers and jagged numbers. For
    object interpretations, ``probe`` reads the first entry only, never the whole branch.
    """
    try:
        interpretation = branch.interpretation
    except Exception as error:
        return f"no interpretation ({type(error).__name__})"
    kind = type(interpretation).__name__
    if kind in SIMPLE_INTERPRETATIONS:
        return None
    if kind == "UnknownInterpretation" or "Unknown" in kind:
        return f"uproot has no interpretation for type {branch.typename}"
    if kind == "AsGrouped":
        return None  # judged through its leaves
    if not probe:
        return None
    try:
        branch.array(entry_stop=min(1, branch.num_entries), library="ak")
    except Exception as error:
        return f"cannot be deserialised by uproot ({type(error).__name__}) for type {branch.typename}"
    return None


def describe_read_error(error: BaseException) -> str:
    """Return the cause of a failed basket or page read in a few words, for a message in brackets.

    The bare class name of ``zlib.error`` ("error") names no cause, and uproot's
    ``DeserializationError`` starts with a multi-line dump of the object it read.
    """
    if isinstance(error, zlib.error):
        return f"decompression failed: {error}"
    if isinstance(error, uproot.deserialization.DeserializationError):
        # The dump names the class being read: a TBasket there means the basket's header is damaged.
        subject = "a basket" if "TBasket" in str(error) else "the data"
        detail = str(getattr(error, "message", "") or "").strip().splitlines()
        return f"{subject} cannot be deserialised: {detail[0]}" if detail else f"{subject} cannot be deserialised"
    if isinstance(error, AssertionError):
        # uproot asserts the RNTuple anchor, header and footer checksums, mostly with no message.
        message = str(error).strip().splitlines()
        return f"a checksum or consistency check failed: {message[0]}" if message else "a checksum or consistency check failed"
    text = str(error).strip()
    # uproot's first lines end in a comma where its message goes on ("expected Chunk of length 112,").
    first_line = text.splitlines()[0].rstrip(",;: ") if text else ""
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
