"""Search behaviour over the fictional fixture (tests/fixtures/directory-small.csv)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.directory import DirectoryIndex, DirectoryMatch, describe, parse_directory_csv
from bot.ports import DirectoryLocation

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "directory-small.csv"


@pytest.fixture(scope="module")
def index() -> DirectoryIndex:
    return DirectoryIndex.build(parse_directory_csv(FIXTURE).locations)


def ids(matches: list[DirectoryMatch]) -> list[str]:
    return [m.location.location_id for m in matches]


def top(index: DirectoryIndex, query: str, **kwargs: object) -> str | None:
    found = index.search(query, **kwargs)  # type: ignore[arg-type]
    return found[0].location.location_id if found else None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Northgate General Hospital", "RXX01"),
        ("northgate generl hospitl", "RXX01"),  # misspelt, lower case
        ("brookside surgrey", "1-900000001"),
        ("meadowbrok clinic harrogate", "1-900000015"),
        ("st aidans hospice", "1-900000022"),
        ("saint aidan's hospice northwich", "1-900000022"),
        ("clearview eye", "1-900000004"),  # partial name; the source name had a tab
        ("pinecrest", "1-900000020"),  # "Residential Home" dropped
        ("kindred homecare", "1-900000011"),  # "Ltd" dropped
        ("swiftline ambulance doncaster", "1-900000025"),
        ("willowbank nursing home", "1-900000026"),  # no address or postcode at all
        ("sunrise lodge care home", "1-900000024"),  # matched through "also known as"
    ],
)
def test_finds_by_name_despite_typos_and_dropped_words(index, query, expected):
    assert top(index, query) == expected


def test_exact_name_outranks_a_longer_name_at_the_same_site(index):
    assert ids(index.search("northgate general hospital"))[:2] == ["RXX01", "RXX02"]
    assert top(index, "northgate maternity unit") == "RXX02"


def test_name_plus_town_picks_the_one_in_that_town(index):
    assert top(index, "sunrise care home gloucester") == "1-900000024"
    assert top(index, "sunrise home care gloucester") == "1-900000023"


@pytest.mark.parametrize("query", ["GL1 2AB", "gl1 2ab", "GL12AB", "gl12ab", " GL1  2AB "])
def test_full_postcode_with_or_without_space(index, query):
    assert ids(index.search(query)) == ["1-900000024"]


def test_outward_code_matches_as_a_prefix_of_whole_outward_codes(index):
    assert set(ids(index.search("LA1"))) == {"1-900000002", "1-900000003"}
    # "LA1" must not match LA9 (Kendal), and "CA1" finds both Carlisle entries.
    assert set(ids(index.search("CA1"))) == {"RXX01", "RXX02"}


def test_postcode_narrows_a_name(index):
    assert ids(index.search("maple house LS6 4QQ"))[:2] == ["1-900000013", "1-900000014"]
    assert top(index, "castle view LA1 3ZP") == "1-900000003"


def test_service_type_boost_reorders_ties(index):
    # Two "Maple House" at the same address: a care home and a GP practice.
    plain = ids(index.search("maple house leeds"))
    assert plain[:2] == ["1-900000013", "1-900000014"]  # tie broken by id
    assert ids(index.search("maple house leeds", service_type="gp"))[:2] == [
        "1-900000014",
        "1-900000013",
    ]
    assert ids(index.search("maple house leeds", service_type="care_home"))[:2] == [
        "1-900000013",
        "1-900000014",
    ]


def test_service_type_is_a_boost_not_a_filter(index):
    # The person said "dentist" but typed a hospital's name: the hospital is still found.
    assert top(index, "northgate general hospital", service_type="dentist") == "RXX01"
    assert top(index, "fellside nursing team", service_type="community") == "1-900000005"
    assert top(index, "sunrise gloucester", service_type="home_care") == "1-900000023"


def test_unknown_service_type_is_ignored(index):
    assert top(index, "pinecrest", service_type="childrens_social_care") == "1-900000020"


@pytest.mark.parametrize(
    "query",
    ["", "   ", "\t\n", "a", "x", "xyz", "hello", "asdfgh qwerty", "😀", "👍🏽🎉", "?!", "hospital",
     "care home", "the", "gloucester", "ZZ9 9ZZ", "thank you"],
)  # fmt: skip
def test_nonsense_returns_nothing(index, query):
    assert index.search(query) == []


def test_limit_and_scores(index):
    found = index.search("house", limit=1)
    assert len(found) <= 1
    assert index.search("maple house", limit=0) == []
    for match in index.search("sunrise", limit=5):
        assert 0.0 <= match.score <= 100.0
    scores = [m.score for m in index.search("sunrise", limit=5)]
    assert scores == sorted(scores, reverse=True)


def test_match_is_frozen(index):
    match = index.search("pinecrest")[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        match.score = 1.0  # type: ignore[misc]


def test_index_is_independent_of_the_input_list():
    locations = parse_directory_csv(FIXTURE).locations
    index = DirectoryIndex.build(locations)
    locations.clear()
    assert len(index) == 25
    assert top(index, "pinecrest") == "1-900000020"


def test_empty_index():
    assert DirectoryIndex.build([]).search("pinecrest") == []


def test_describe_with_address_and_postcode(index):
    lodge = index.search("sunrise lodge")[0].location
    assert describe(lodge) == "Sunrise Lodge — 5 High Street, Gloucester, GL1 2AB"


def test_describe_falls_back_to_local_authority(index):
    willowbank = index.search("willowbank")[0].location
    assert describe(willowbank) == "Willowbank Nursing Home — Cumberland"
    assert describe(DirectoryLocation(location_id="1-1", name="Bare")) == "Bare"


def test_describe_keeps_labels_short():
    long = DirectoryLocation(location_id="1-2", name="N" * 200, postcode="AB1 2CD")
    assert len(describe(long)) <= 120


@pytest.mark.parametrize("query", ["asdf", "brok", "smil"])
def test_a_short_lone_word_must_be_a_whole_word_of_a_name(index, query):
    # Fuzzy matching four letters finds something almost everywhere ("asdf" ~ "ASD Services").
    assert index.search(query) == []


def test_a_short_lone_word_that_is_a_name_word_still_matches(index):
    assert top(index, "castle") == "1-900000003"
