"""Parsing the regulator's directory CSV, over the fictional fixture and small variants."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest

from bot.directory import DirectoryFormatError, parse_directory_csv
from bot.directory.csv_format import parse_check_date, parse_phone, split_list

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "directory-small.csv"


@pytest.fixture(scope="module")
def parsed():
    return parse_directory_csv(FIXTURE)


def by_id(parsed, location_id):
    return next(loc for loc in parsed.locations if loc.location_id == location_id)


def test_fixture_is_in_the_official_layout():
    raw = FIXTURE.read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    lines = raw.decode("utf-8").split("\r\n")
    assert lines[0].startswith("CQC Locations data,")
    assert lines[4].startswith("Name,Also known as,Address,Postcode,")


def test_reads_all_locations_and_the_produced_on_date(parsed):
    assert parsed.produced_on == "1 March 2026"
    assert len(parsed.locations) == 25
    assert len({loc.location_id for loc in parsed.locations}) == 25


def test_phone_gets_its_leading_zero_back(parsed):
    assert by_id(parsed, "1-900000002").phone == "01632960102"
    assert by_id(parsed, "1-900000019").phone == "01174960119"
    assert by_id(parsed, "1-900000020").phone == ""


def test_dates_in_both_styles_and_unreadable_ones(parsed):
    assert by_id(parsed, "1-900000001").last_checked == date(2020, 4, 2)
    assert by_id(parsed, "1-900000015").last_checked == date(2023, 6, 15)  # 15/06/2023
    assert by_id(parsed, "1-900000016").last_checked is None  # "not a date"
    assert by_id(parsed, "1-900000002").last_checked is None  # blank


def test_duplicate_service_types_are_removed_keeping_order(parsed):
    assert by_id(parsed, "1-900000001").service_types == ("Doctors/GPs",)
    assert by_id(parsed, "1-900000010").service_types == ("Doctors/GPs", "Urgent care centres")
    assert by_id(parsed, "1-900000003").specialisms == (
        "Dementia",
        "Caring for adults over 65 yrs",
    )


def test_leading_spaces_and_tabs_are_stripped_from_names(parsed):
    assert by_id(parsed, "1-900000001").name == "Brookside Surgery"
    assert by_id(parsed, "1-900000004").name == "ClearView Eye Clinic"


def test_missing_address_and_postcode_are_empty(parsed):
    willowbank = by_id(parsed, "1-900000026")
    assert (willowbank.address, willowbank.postcode) == ("", "")
    assert willowbank.local_authority == "Cumberland"


def test_all_fields_are_mapped(parsed):
    lodge = by_id(parsed, "1-900000024")
    assert lodge.name == "Sunrise Lodge"
    assert lodge.also_known_as == "Sunrise Lodge Care Home"
    assert lodge.address == "5 High Street,Gloucester"
    assert lodge.postcode == "GL1 2AB"
    assert lodge.provider_name == "Sunrise Care Group Ltd"
    assert lodge.provider_id == "1-800000024"
    assert lodge.region == "South West"
    assert lodge.url == "https://www.cqc.org.uk/location/1-900000024"
    assert by_id(parsed, "1-900000004").website == "https://clearview.example"


def test_row_without_location_id_is_skipped_and_reported(parsed):
    missing = [p for p in parsed.skipped if "no location id" in p.reason]
    assert [p.name for p in missing] == ["Ghost Row Care"]
    assert missing[0].line == 11
    assert all(loc.name != "Ghost Row Care" for loc in parsed.locations)


def test_duplicate_id_last_row_wins_and_is_reported(parsed):
    riverside = by_id(parsed, "1-900000021")
    assert riverside.address == "90 Bridge Street,Worcester"
    assert riverside.phone == "01632960127"
    duplicates = [p for p in parsed.skipped if "duplicate" in p.reason]
    assert [(p.location_id, p.line) for p in duplicates] == [("1-900000021", 32)]
    assert "line 26" in duplicates[0].reason


def test_utf8_bom_and_lf_only_line_endings():
    text = FIXTURE.read_bytes().decode("utf-8").replace("\r\n", "\n")
    assert "\r" not in text
    with_bom = "\ufeff" + text
    for variant in (text, with_bom):
        parsed = parse_directory_csv(io.StringIO(variant, newline=""))
        assert len(parsed.locations) == 25
        assert parsed.produced_on == "1 March 2026"


def test_bom_in_a_file_on_disk(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + FIXTURE.read_bytes())
    assert len(parse_directory_csv(path).locations) == 25
    assert len(parse_directory_csv(str(path)).locations) == 25


def test_header_is_found_by_its_column_names_not_by_line_number():
    lines = FIXTURE.read_bytes().decode("utf-8").split("\r\n")
    no_preamble = "\r\n".join(lines[4:])
    longer_preamble = "\r\n".join(["Extra title line,,", *lines])
    assert parse_directory_csv(io.StringIO(no_preamble)).produced_on is None
    assert len(parse_directory_csv(io.StringIO(no_preamble)).locations) == 25
    assert len(parse_directory_csv(io.StringIO(longer_preamble)).locations) == 25


def test_older_header_spellings_are_accepted():
    old = (
        "CQC Locations data,,\r\n,,\r\nThis data was produced on 15 April 2020,,\r\n,,\r\n"
        "Name,Local Authority,CQC Location (for office use only\r\n"
        "Elm Court,Trafford,1-100\r\n"
    )
    parsed = parse_directory_csv(io.StringIO(old))
    (elm,) = parsed.locations
    assert (elm.location_id, elm.local_authority) == ("1-100", "Trafford")
    assert parsed.produced_on == "15 April 2020"


@pytest.mark.parametrize(
    "content",
    [
        "",
        "id,name,score\r\n1,Alice,3\r\n",
        "Name,Address,Postcode\r\nElm Court,1 Road,AB1 2CD\r\n",  # no location id column
    ],
)
def test_a_file_that_is_not_the_directory_raises_a_clear_error(content):
    with pytest.raises(DirectoryFormatError, match=r"CQC Location ID \(for office use only\)"):
        parse_directory_csv(io.StringIO(content))


def test_binary_file_raises_format_error(tmp_path):
    path = tmp_path / "not.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DirectoryFormatError):
        parse_directory_csv(path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1452471471", "01452471471"),
        ("207946000", "0207946000"),
        ("01452471471", "01452471471"),
        ("441452471471", "01452471471"),
        ("0161 496 0000", "01614960000"),
        ("", ""),
        ("ask reception", "ask reception"),
        ("74297200831", "74297200831"),  # 11 digits without 0: not guessed
    ],
)
def test_parse_phone(raw, expected):
    assert parse_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("02/Apr/2020 - 00:00", date(2020, 4, 2)),
        ("2/apr/2020", date(2020, 4, 2)),
        ("02/04/2020 - 00:00", date(2020, 4, 2)),
        ("2020-04-02", date(2020, 4, 2)),
        ("31/Feb/2020 - 00:00", None),
        ("02/Foo/2020 - 00:00", None),
        ("", None),
    ],
)
def test_parse_check_date(raw, expected):
    assert parse_check_date(raw) == expected


def test_split_list_dedupes_and_drops_blanks():
    assert split_list("Doctors/GPs| Doctors/GPs||Dentist|") == ("Doctors/GPs", "Dentist")
