"""One spelling for the branch type names of ROOT (C++), RNTuple, numpy and Arrow, so that drift compares types, not spellings."""

from __future__ import annotations

import re

# Scalar type names, keyed in lower case after "std::" is removed, mapped to numpy's names.
# ``long`` is taken as 64 bits, as on LP64 platforms (Linux, macOS). ROOT's Float16_t and
# Double32_t keep their names, because they store fewer bits on disk than they have in memory.
SCALAR_TYPES: dict[str, str] = {
    **dict.fromkeys(("double", "double_t", "float64", "f8"), "float64"),
    **dict.fromkeys(("float", "float_t", "float32", "f4"), "float32"),
    **dict.fromkeys(("halffloat", "float16", "f2"), "float16"),
    **dict.fromkeys(("char", "signed char", "char_t", "int8_t", "int8", "i1"), "int8"),
    **dict.fromkeys(("unsigned char", "uchar_t", "byte_t", "uint8_t", "uint8", "u1"), "uint8"),
    **dict.fromkeys(("short", "short int", "signed short", "short_t", "int16_t", "int16", "i2"), "int16"),
    **dict.fromkeys(("unsigned short", "unsigned short int", "ushort_t", "uint16_t", "uint16", "u2"), "uint16"),
    **dict.fromkeys(("int", "signed", "signed int", "int_t", "int32_t", "int32", "i4"), "int32"),
    **dict.fromkeys(("unsigned", "unsigned int", "uint_t", "uint32_t", "uint32", "u4"), "uint32"),
    **dict.fromkeys(
        ("long", "long int", "long long", "long long int", "long_t", "long64_t", "int64_t", "int64", "i8"), "int64"
    ),
    **dict.fromkeys(
        ("unsigned long", "unsigned long int", "unsigned long long", "ulong_t", "ulong64_t", "uint64_t", "uint64", "u8"),
        "uint64",
    ),
    **dict.fromkeys(("bool", "bool_t", "b1"), "bool"),
    **dict.fromkeys(("string", "tstring", "char*", "const char*", "large_string", "utf8"), "string"),
}

# Templates of a variable-length list of one element type, from C++ and ROOT and then from Arrow.
LIST_TEMPLATES = frozenset({"vector", "ROOT::VecOps::RVec", "ROOT::RVec", "RVec", "list", "large_list", "list_view", "large_list_view"})
# Templates whose values read as their one argument: an RNTuple collection size, Arrow's fixed-size list (its size follows in brackets).
ELEMENT_TEMPLATES = frozenset({"ROOT::RNTupleCardinality", "RNTupleCardinality", "ROOT::Experimental::RNTupleCardinality", "fixed_size_list"})

_ARRAY = re.compile(r"(?P<element>.+)\[(?P<size>\d*)\]")
_TEMPLATE = re.compile(r"(?P<outer>[\w:]+)\s*<(?P<arguments>.*)>")
# An Arrow list item is written "item: float" or "element: float not null".
_ARROW_ITEM = re.compile(r"^\w+:(?!:)\s*(?P<type>.*?)(?:\s+not null)?$")


def canonical_type_name(name: str) -> str:
    """Return ``name`` in one spelling: numpy scalar names, ``T[]`` for any variable-length list, ``T[N]`` for a fixed array.

    For example, ``double``, ``Double_t`` and Arrow's ``double`` give ``float64``. The names ``std::vector<float>``,
    uproot's ``float[]``, ``ROOT::VecOps::RVec<float>`` and Arrow's ``list<item: float>`` give ``float32[]``.
    Names it does not know, such as class names, come back with only their spacing and ``std::`` removed.
    """
    text = " ".join(name.replace("std::", "").split())
    if not text:
        return ""

    array = _ARRAY.fullmatch(text)
    if array:
        return f"{canonical_type_name(array['element'])}[{array['size']}]"

    template = _TEMPLATE.fullmatch(text)
    if template:
        outer = template["outer"]
        arguments = _split_arguments(template["arguments"])
        if len(arguments) == 1 and (outer in LIST_TEMPLATES or outer in ELEMENT_TEMPLATES):
            item = _ARROW_ITEM.fullmatch(arguments[0])
            element = canonical_type_name(item["type"] if item else arguments[0])
            return f"{element}[]" if outer in LIST_TEMPLATES else element
        return f"{outer}<{','.join(canonical_type_name(argument) for argument in arguments)}>"

    return SCALAR_TYPES.get(text.lower(), text)


def _split_arguments(text: str) -> list[str]:
    """Split the arguments of a template at its top-level commas."""
    arguments = []
    depth = 0
    start = 0
    for index, character in enumerate(text):
        if character == "<":
            depth += 1
        elif character == ">":
            depth -= 1
        elif character == "," and depth == 0:
            arguments.append(text[start:index].strip())
            start = index + 1
    arguments.append(text[start:].strip())
    return arguments
