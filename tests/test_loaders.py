"""Loading cables from text files, folders, JSON lines, cables.csv and cablegate pages, and surviving bad input.

Tests marked ``corpus`` use /work/shared/corpus and skip when it is absent; the rest build what they need
from ``seeds/`` in tmp_path.
"""

from __future__ import annotations

import ctypes
import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import CORPUS, REPO, SEED_IDS, SEEDS, corpus_lines, needs_corpus, seed_texts

from rag import formats
from rag.cli import main
from rag.formats import INVALID_UTF8, Record, read_html_page, read_jsonl, unwrap_row
from rag.loaders import LoadReport, detect_format, load_cables, merge
from rag.models import Cable, Paragraph

HTML_SAMPLES = CORPUS / "raw_html_samples"
CSV_SAMPLE = CORPUS / "cables_csv_sample" / "cables_sample.csv"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def load(path: Path) -> tuple[list[Cable], LoadReport]:
    report = LoadReport()
    return list(load_cables(path, report=report)), report


def csv_row(number: int, cable_id: str, text: str, *, header: str = "") -> str:
    """A cables.csv row as the dump writes it: quoted fields, backslash-escaped quotes."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'") + '"'

    fields = [str(number), "4/17/2009 12:08", cable_id, "Embassy Somewhere", "UNCLASSIFIED", "", header, text]
    return ",".join(map(quoted, fields)) + "\n"


# --- text files and folders (no shared corpus needed) ------------------------------------------------------


def test_seed_file_loads_one_cable():
    cables, report = load(sorted(SEEDS.glob("*.txt"))[0])
    assert [c.id for c in cables] == ["09ASTANA664"]
    assert cables[0].date == utc(2009, 4, 17, 12, 8)
    assert cables[0].source == str(sorted(SEEDS.glob("*.txt"))[0])
    assert (report.loaded, report.skipped, report.problems) == (1, 0, [])


def test_file_without_extension_is_cable_text(tmp_path):
    shutil.copy(sorted(SEEDS.glob("*.txt"))[1], tmp_path / "09MOSCOW2809")
    assert [c.id for c in load_cables(tmp_path / "09MOSCOW2809")] == ["09MOSCOW2809"]


def test_nested_folder_of_seeds_skips_hidden_and_foreign_files(tmp_path):
    shutil.copytree(SEEDS, tmp_path / "a" / "b" / "seeds")
    shutil.copytree(SEEDS, tmp_path / ".git" / "seeds")
    (tmp_path / "a" / "README.md").write_text("# not a cable\n")
    (tmp_path / "a" / "notes.json").write_text("{}\n")
    cables, report = load(tmp_path)
    assert {c.id for c in cables} == SEED_IDS
    assert (report.loaded, report.skipped) == (2, 0)


def test_unknown_extension_is_sniffed_when_named_explicitly(tmp_path):
    path = tmp_path / "export.dat"
    path.write_text(json.dumps({"id": "09MOSCOW2809", "body": seed_texts()[1]}) + "\n")
    assert [c.id for c in load_cables(path)] == ["09MOSCOW2809"]


def test_missing_path_raises_at_once(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_cables(tmp_path / "nowhere")


def test_load_is_lazy(tmp_path):
    astana, moscow = seed_texts()
    path = tmp_path / "cables.csv"
    path.write_text(csv_row(1, "09ASTANA664", astana) + csv_row(2, "09MOSCOW2809", moscow) + '"3","garbage\n')
    report = LoadReport()
    cables = load_cables(path, report=report)
    assert next(cables).id == "09ASTANA664"
    assert report.skipped == 0  # the broken row at the end has not been read yet
    assert [c.id for c in cables] == ["09MOSCOW2809"]
    assert report.summary() == "loaded 2 cables, skipped 1"


# --- what cannot be read, and input that holds no cable ---------------------------------------------------


def without_read_rights() -> Callable[[], None] | None:
    """For a subprocess: drop root's power to read what its permissions forbid (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH, from the bounding set, so the program exec'd runs without them), making a chmod 000
    folder unreadable for real. None when not root: permissions already apply."""
    if os.geteuid() != 0:
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) refused")

    return drop


def cablechat_as_a_user(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([sys.executable, "-m", "rag.cli", *map(str, argv)], cwd=REPO, capture_output=True,
                              text=True, timeout=120, preexec_fn=without_read_rights())
    except subprocess.SubprocessError as exc:  # a container that forbids dropping capabilities
        pytest.skip(f"cannot run a process without read rights here: {exc}")


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A folder with a seed, an unreadable sub-folder holding the other, and an unreadable file."""
    astana, moscow = sorted(SEEDS.glob("*.txt"))
    shutil.copy(astana, tmp_path / "astana.txt")
    (tmp_path / "locked").mkdir()
    shutil.copy(moscow, tmp_path / "locked" / "moscow.txt")
    shutil.copy(moscow, tmp_path / "secret.txt")
    for path in (tmp_path / "locked", tmp_path / "secret.txt"):
        path.chmod(0)
    yield tmp_path
    for path in (tmp_path / "locked", tmp_path / "secret.txt"):
        path.chmod(0o755)


def test_an_unreadable_folder_is_reported_like_an_unreadable_file(locked):
    done = cablechat_as_a_user("parse", locked)
    assert done.returncode == 0 and done.stdout.startswith("09ASTANA664\t")
    assert done.stderr.splitlines() == [
        "loaded 1 cables, skipped 2",
        f"  skipped {locked / 'secret.txt'}: cannot read the file: Permission denied",
        f"  skipped {locked / 'locked'}: cannot read the folder: Permission denied",
    ]
    done = cablechat_as_a_user("parse", locked / "locked")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "loaded 0 cables, skipped 1",
        f"  skipped {locked / 'locked'}: cannot read the folder: Permission denied",
        f"cablechat parse: found no cable in {locked / 'locked'}",
    ]


def test_parse_of_a_file_without_a_cable_fails(tmp_path, capsys):
    path = tmp_path / "passwd"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert main(["parse", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1] == f"cablechat parse: found no cable in {path}"
    assert err.count(f"skipped {path}: ") == 1


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.txt", "text"), ("09ASTANA664", "text"), ("x.jsonl", "jsonl"), ("x.JSONL.GZ", "jsonl"),
     ("cables.csv", "csv"), ("cables.csv.gz", "csv"), ("p.html", "html"), ("p.htm", "html"), ("n.md", None)],
)
def test_detect_format(name, fmt):
    assert detect_format(Path(name)) == fmt


# --- bad input ---------------------------------------------------------------------------------------------


def astana_lines() -> int:
    return csv_row(1, "09ASTANA664", seed_texts()[0]).count("\n")


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    astana, moscow = seed_texts()
    good = {"id": "09ASTANA664", "header": "", "body": astana}
    files: dict[str, bytes | str] = {
        "good/astana.txt": astana,
        "empty.txt": b"",
        "blank.txt": b"  \n\n",
        "blob": b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(range(256)),
        "prose.txt": "Dear diary, nothing happened today.\nSee you tomorrow.\n",
        "latin1.txt": moscow.encode("utf-8").replace(b"Klapovskiy", b"Klapovsk\xefy"),
        "rows.csv": csv_row(1, "09ASTANA664", astana) + '"2","4/18/2009 9:00","09X1","E","U","","",'
        '"cut off\n' + csv_row(3, "09MOSCOW2809", moscow),
        "cut.csv": csv_row(1, "09ASTANA664", astana) + csv_row(2, "09MOSCOW2809", moscow)[:500],
        "fields.csv": '"1","2/3/2004 5:06","04X1"\n',
        "junk.csv": "id,date,text\nhello, world\n\n" + csv_row(1, "09MOSCOW2809", moscow),
        "lines.jsonl": "\n".join([json.dumps(good), "{not json", "[1, 2]", "", json.dumps(good), '{"id": "X"}']),
        "broken.jsonl.gz": b"this is not gzip data\n",
        "page.html": "<html><body><h3>Nothing here</h3></body></html>",
        "notes.md": "# left alone\n",
        ".hidden/astana.txt": astana,
    }
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return tmp_path


def test_bad_input_is_skipped_with_reasons_and_good_files_load(messy_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="rag.loaders"):
        cables, report = load(messy_folder)

    def reason(source: str) -> str:
        found = [r for s, r in report.problems if s == str(messy_folder / source)]
        assert len(found) == 1, (source, report.problems)
        return found[0]

    loaded = sorted((Path(c.source.split(":")[0]).name, c.id) for c in cables)
    assert loaded == [
        ("astana.txt", "09ASTANA664"),
        ("cut.csv", "09ASTANA664"),
        ("junk.csv", "09MOSCOW2809"),
        ("latin1.txt", "09MOSCOW2809"),
        ("lines.jsonl", "09ASTANA664"),
        ("lines.jsonl", "09ASTANA664"),
        ("rows.csv", "09ASTANA664"),
        ("rows.csv", "09MOSCOW2809"),
    ]
    assert "empty file" in reason("empty.txt")
    assert "empty file" in reason("blank.txt")
    assert "binary" in reason("blob")
    assert "not a cable" in reason("prose.txt")
    second_row = astana_lines() + 1
    assert f"next row at line {second_row + 1}" in reason(f"rows.csv:{second_row}")
    assert "file ends inside a quoted field" in reason(f"cut.csv:{second_row}")
    assert "3 fields, expected 8" in reason("fields.csv:1")
    assert "lines 1-3 are not cables.csv rows" in reason("junk.csv:1")
    assert "not JSON" in reason("lines.jsonl:2")
    assert "JSON list" in reason("lines.jsonl:3")
    assert "'body'" in reason("lines.jsonl:6")
    assert "unreadable" in reason("broken.jsonl.gz")
    assert "no <pre>" in reason("page.html")
    assert report.skipped == len(report.problems) == 13
    assert report.loaded == len(cables) == 8
    assert report.notes == [(str(messy_folder / "latin1.txt"), INVALID_UTF8)]
    (latin1,) = [c for c in cables if c.source.endswith("latin1.txt")]
    assert "Klapovsk\ufffdy" in " ".join(p.text for p in latin1.paragraphs)
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == report.skipped + len(report.notes)
    assert all(any(source in m for m in logged) for source, _ in report.problems)


def test_oversized_csv_row_is_dropped_until_the_next_row(tmp_path, monkeypatch):
    good = csv_row(2, "09MOSCOW2809", seed_texts()[1])
    monkeypatch.setattr(formats, "MAX_ROW_CHARS", len(good) + 10)
    path = tmp_path / "cables.csv"
    path.write_text('"1","1/1/2000 0:00","X","' + "no closing quote\n" * len(good) + good)
    cables, report = load(path)
    assert [c.id for c in cables] == ["09MOSCOW2809"]
    (problem,) = report.problems
    assert problem == (f"{path}:1", f"row runs past {len(good) + 10:,} characters without its closing quote")


def test_truncated_gzip_keeps_what_came_before(tmp_path):
    line = json.dumps({"id": "09ASTANA664", "header": "", "body": seed_texts()[0]}) + "\n"
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(line.encode() * 40)[:-200])
    cables, report = load(path)
    assert 0 < report.loaded < 40
    assert report.skipped == 1 and "unreadable" in report.problems[0][1]


# --- precedence (pure) -------------------------------------------------------------------------------------


def test_merge_precedence():
    parsed = Cable(
        id="10ABUDHABI1", date=utc(2010, 2, 24, 10, 51), origin="Embassy Abu Dhabi (text)",
        classification="SECRET", subject=None, tags=("PREL",), references=("10STATE1",),
        paragraphs=(Paragraph("10ABUDHABI1", 1, "One."), Paragraph("10ABUDHABI1", 2, "Two.")),
    )
    record = Record(
        source="corpus.jsonl:7", text="", id="10ABUDHABI103", date=utc(2010, 2, 24, 10),
        origin="Embassy Abu Dhabi", classification="SECRET//NOFORN", subject="UAE REQUEST \\",
    )
    merged = merge(parsed, record)
    assert merged.id == "10ABUDHABI103"
    assert {p.cable_id for p in merged.paragraphs} == {"10ABUDHABI103"}
    assert [p.ref for p in merged.paragraphs] == ["10ABUDHABI103 ¶1", "10ABUDHABI103 ¶2"]
    assert merged.date == utc(2010, 2, 24, 10, 51)  # the text's DTG beats the site's broken minutes
    assert (merged.origin, merged.classification) == ("Embassy Abu Dhabi", "SECRET//NOFORN")
    assert merged.subject == "UAE REQUEST"  # only because the text had none; stray backslash gone
    assert (merged.tags, merged.references) == (("PREL",), ("10STATE1",))  # record had none
    assert merged.source == "corpus.jsonl:7"

    fallback = merge(
        Cable(id="X", date=None, origin=None, classification=None, subject="FROM TEXT", paragraphs=()),
        Record(source="s", text="", date=utc(2004, 1, 1, 12), subject="FROM PAGE", tags=("PGOV",)),
    )
    assert (fallback.id, fallback.date, fallback.subject, fallback.tags) == (
        "X", utc(2004, 1, 1, 12), "FROM TEXT", ("PGOV",))


def test_unwrap_row_keeps_the_text_field_and_the_row_metadata():
    body = (
        "2009-01-15 11:47:00\t09ANKARA71\tEmbassy Ankara\tSECRET\t09STATE2519\tP 151147Z JAN 09\\\n"
        "FM AMEMBASSY ANKARA\\\nTO SECSTATE WASHDC\\\n\tS E C R E T ANKARA 000071 \\\n \\\n"
        "TAGS: ETTC SZ\nSUBJECT: TURKEY \\\n \\\n¶1. (S) Text. \\\nJeffrey \\\tEmbassy Ankara\tSECRET"
    )
    row = unwrap_row(body)
    assert row is not None
    assert row.text == (
        "S E C R E T ANKARA 000071 \n \nTAGS: ETTC SZ\nSUBJECT: TURKEY \n \n¶1. (S) Text. \nJeffrey"
    )
    assert (row.date, row.references) == (utc(2009, 1, 15, 11, 47), ("09STATE2519",))
    assert unwrap_row("UNCLAS ASTANA 000664\n\n1. (U) Text.") is None


# --- the shared corpus -------------------------------------------------------------------------------------

HTML_EXPECTED = {
    # id: (classification, origin, date) – the DTG's time where the header has one
    "10ABUDHABI103": ("SECRET//NOFORN", "Embassy Abu Dhabi", utc(2010, 2, 24, 10, 51)),
    "66BUENOSAIRES2481": ("UNCLASSIFIED", "Embassy Buenos Aires", utc(1966, 12, 28, 18, 48)),
    "05NEWDELHI9127": ("CONFIDENTIAL", "Embassy New Delhi", utc(2005, 12, 2, 12, 54)),
    "04ANKARA348": ("CONFIDENTIAL", "Embassy Ankara", utc(2004, 1, 20, 12, 47)),  # "201247Z Jan 04" notice
    "04BOGOTA11339": ("CONFIDENTIAL", "Embassy Bogota", utc(2004, 11, 2, 18, 31)),  # the raw row's date
    "04CARACAS2200": ("CONFIDENTIAL", "Embassy Caracas", utc(2004, 7, 9, 15)),  # page date, hour only
}


@pytest.mark.corpus
@needs_corpus
@pytest.mark.parametrize("cable_id", sorted(HTML_EXPECTED))
def test_html_sample(cable_id):
    cables, report = load(HTML_SAMPLES / f"{cable_id}.html")
    assert (report.loaded, report.skipped) == (1, 0), report.problems
    (cable,) = cables
    assert cable.id == cable_id
    assert (cable.classification, cable.origin, cable.date) == HTML_EXPECTED[cable_id]
    assert cable.paragraphs and {p.cable_id for p in cable.paragraphs} == {cable_id}
    assert not any("<a " in p.text or "&#x" in p.text for p in cable.paragraphs)


@pytest.mark.corpus
@needs_corpus
def test_html_pages_give_the_same_records_as_the_corpus_lines(tmp_path):
    by_id = {json.loads(line)["id"]: line for line in corpus_lines(6712)}
    for page in sorted(HTML_SAMPLES.glob("*.html")):
        (tmp_path / "one.jsonl").write_bytes(by_id[page.stem])
        (from_page,) = read_html_page(page)
        (from_line,) = read_jsonl(tmp_path / "one.jsonl")
        assert from_page.text == from_line.text and from_page.id == from_line.id == page.stem
        for name in ("subject", "tags", "date", "origin", "classification", "references"):
            assert getattr(from_page, name) == getattr(from_line, name), (page.stem, name)


@pytest.mark.corpus
@needs_corpus
def test_cables_csv_sample():
    cables, report = load(CSV_SAMPLE)
    assert (report.loaded, report.skipped) == (2, 0), report.problems
    buenos_aires, tehran = cables
    assert (buenos_aires.id, tehran.id) == ("66BUENOSAIRES2481", "72TEHRAN1164")
    assert buenos_aires.references == ("66STATE106206",)
    assert tehran.references == ("72MOSCOW1603", "72TEHRAN1091", "72TEHRAN263")
    assert buenos_aires.date == utc(1966, 12, 28, 18, 48) and tehran.date == utc(1972, 2, 25, 9, 30)
    assert buenos_aires.source == f"{CSV_SAMPLE}:1" and tehran.source.startswith(f"{CSV_SAMPLE}:")
    assert [p.number for p in buenos_aires.paragraphs if p.number] == list(range(1, 9))
    text = " ".join(p.text for p in buenos_aires.paragraphs)
    assert '"EPICONTINENTAL SEA OUT TO 200 METER ISOBAR"' in text  # \" unescaped
    assert "LEGAL ADVISORS' QUALMS" in text  # \' unescaped
    assert "AMEMBASSY RIO DE JANEIRO" in " ".join(buenos_aires.info)  # multi-line header field intact
    assert "\\" not in text
    first, _ = formats.read_cables_csv(CSV_SAMPLE)
    assert "PLUS ANOTHER SIX MILES \nOF EXCLUSIVE FISHING JURISDICTION" in first.text
    assert first.text.startswith("P R 281848Z DEC 66\nFM AMEMBASSY BUENOS AIRES\n")


@pytest.mark.corpus
@needs_corpus
@pytest.mark.parametrize("name", ["slice.jsonl", "slice.jsonl.gz"])
def test_jsonl_slice(tmp_path, name):
    lines = corpus_lines(30)
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"".join(lines)) if name.endswith(".gz") else b"".join(lines))
    cables, report = load(path)
    assert (report.loaded, report.skipped) == (30, 0), report.problems
    assert [c.id for c in cables] == [json.loads(line)["id"] for line in lines]
    assert [c.source for c in cables] == [f"{path}:{n}" for n in range(1, 31)]
    for cable in cables:
        assert cable.paragraphs and {p.cable_id for p in cable.paragraphs} == {cable.id}
        assert cable.date is not None and cable.date.tzinfo is not None


@pytest.mark.corpus
@needs_corpus
def test_folder_of_every_format(tmp_path):
    shutil.copytree(SEEDS, tmp_path / "seeds")
    shutil.copytree(HTML_SAMPLES, tmp_path / "pages" / "html")
    shutil.copy(CSV_SAMPLE, tmp_path / "pages" / "cables.csv")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "deep" / "er" / "slice.jsonl.gz").write_bytes(gzip.compress(b"".join(corpus_lines(5))))
    cables, report = load(tmp_path)
    assert (report.loaded, report.skipped) == (2 + 6 + 2 + 5, 0), report.problems
    assert SEED_IDS | set(HTML_EXPECTED) | {"72TEHRAN1164"} <= {c.id for c in cables}
