"""Branch type names of ROOT, RNTuple, numpy and Arrow in one spelling, as the report's drift compares them."""

from __future__ import annotations

import pytest

from cmsgen.engine.report.typenames import canonical_type_name


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["double", "Double_t", "float64", "std::double"], "float64"),
        (["float", "Float_t", "float32"], "float32"),
        (["int", "int32_t", "std::int32_t", "Int_t", "int32"], "int32"),
        (["long", "long long", "int64_t", "Long64_t", "Long_t", "int64"], "int64"),
        (["unsigned int", "unsigned", "uint32_t", "std::uint32_t", "UInt_t", "uint32"], "uint32"),
        (["unsigned long", "uint64_t", "ULong64_t", "uint64"], "uint64"),
        (["short", "int16_t", "Short_t"], "int16"),
        (["unsigned char", "uint8_t", "UChar_t"], "uint8"),
        (["bool", "Bool_t"], "bool"),
        (["char*", "std::string", "string", "large_string"], "string"),
        (["float[]", "std::vector<float>", "ROOT::VecOps::RVec<float>", "list<item: float>", "large_list<element: float not null>"], "float32[]"),
        (["int32_t[]", "ROOT::VecOps::RVec<std::int32_t>", "std::vector<int>", "list<item: int32>"], "int32[]"),
        (["ROOT::RNTupleCardinality<std::uint32_t>", "uint32_t"], "uint32"),
        (["float[3]", "Float_t[3]", "fixed_size_list<item: float>[3]"], "float32[3]"),
        (["std::vector<std::vector<uint32_t>>", "vector<vector<unsigned int> >"], "uint32[][]"),
    ],
)
def test_spellings_share_one_name(names: list[str], expected: str) -> None:
    assert [canonical_type_name(name) for name in names] == [expected] * len(names)


@pytest.mark.parametrize(
    ("first", "second"),
    [("float", "double"), ("int32_t", "int64_t"), ("int32_t", "uint32_t"), ("float[]", "double[]"), ("float[]", "float"), ("float[3]", "float[4]"), ("Double32_t", "double")],
)
def test_real_type_changes_stay_apart(first: str, second: str) -> None:
    assert canonical_type_name(first) != canonical_type_name(second)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("edm::Wrapper<LumiSummary>", "edm::Wrapper<LumiSummary>"),
        ("std::vector<edm::ProductProvenance>", "edm::ProductProvenance[]"),
        ("map<string,int>", "map<string,int32>"),
        ("timestamp[ns]", "timestamp[ns]"),
        ("", ""),
    ],
)
def test_unknown_names_kept(name: str, expected: str) -> None:
    assert canonical_type_name(name) == expected
