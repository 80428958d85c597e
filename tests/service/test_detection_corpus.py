"""Detection agrees with `file --mime` on a corpus of real files of many types; disagreements are explained."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from mime_server.detection import Detector, extension_mismatch
from tests.service.conftest import Harness
from tests.service.corpus import generated_files, real_files

FILE = "/usr/bin/file"

# Every known disagreement, keyed by (what `file` says, what we say), with why it is expected.
ALLOWED_DISAGREEMENTS: dict[tuple[str, str], str] = {
    ("application/x-pie-executable; charset=binary", "application/x-sharedlib; charset=binary"): (
        "POST /v1/detect sees a buffer, not a file: libmagic tells a PIE executable from a shared library "
        "by reading the DF_1_PIE flag through the file descriptor (file_tryelf), which is not done for buffers. "
        "Uploads detect from the stored file and agree with `file`."),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    files = real_files() + generated_files(tmp_path_factory.mktemp("generated"))
    answer = subprocess.run([FILE, "--mime", "-b", "--", *map(str, files)], check=True, capture_output=True,
                            text=True).stdout.splitlines()
    assert len(answer) == len(files)
    return list(zip(files, answer, strict=True))


def test_corpus_is_large_and_diverse(corpus: list[tuple[Path, str]]) -> None:
    kinds = Counter(expected.split(";")[0] for _, expected in corpus)
    assert len(corpus) >= 80, f"only {len(corpus)} files in the corpus"
    assert len(kinds) >= 25, f"only {len(kinds)} distinct types: {sorted(kinds)}"


def test_upload_detection_agrees_with_file_on_every_corpus_file(corpus: list[tuple[Path, str]]) -> None:
    detector = Detector()
    disagreements = []
    for path, expected in corpus:
        detection = detector.detect_file(str(path))
        ours = f"{detection.mime_type}; charset={detection.charset}"
        if ours != expected:
            disagreements.append((str(path), expected, ours))
    assert disagreements == []


def test_detect_endpoint_agrees_with_file_except_explained_cases(corpus: list[tuple[Path, str]]) -> None:
    detector = Detector()
    unexplained, explained = [], []
    for path, expected in corpus:
        detection = detector.detect_bytes(path.read_bytes())
        ours = f"{detection.mime_type}; charset={detection.charset}"
        if ours == expected:
            continue
        (explained if (expected, ours) in ALLOWED_DISAGREEMENTS else unexplained).append((str(path), expected, ours))
    assert unexplained == []
    agreement = 1 - len(explained) / len(corpus)
    assert agreement >= 0.95, f"agreement {agreement:.1%}; explained: {explained}"


def test_honestly_named_corpus_files_show_no_extension_mismatch(corpus: list[tuple[Path, str]]) -> None:
    detector = Detector()
    flagged = [(path.name, detector.detect_file(str(path), path.name).mime_type) for path, _ in corpus
               if detector.detect_file(str(path), path.name).extension_mismatch]
    assert flagged == []


@pytest.mark.parametrize("filename,mime_type,mismatch", [
    ("photo.png", "application/pdf", True), ("notes.txt", "application/x-sharedlib", True),
    ("report.pdf", "text/plain", True), ("backup.gz", "application/gzip", False),
    ("backup.txt", "application/gzip", True), ("song.tar.gz", "application/gzip", False),
    ("lib.so", "application/x-sharedlib", False), ("data.csv", "text/plain", False),
    ("README", "text/plain", False), ("font.otf", "font/sfnt", False), ("a.docx", "application/zip", False),
    ("pic.jpg", "image/png", True), ("x.unknownext", "image/png", False), (None, "image/png", False),
])
def test_extension_mismatch_rules(filename: str | None, mime_type: str, mismatch: bool) -> None:
    assert extension_mismatch(filename, mime_type) is mismatch


def test_uploads_of_corpus_sample_serve_the_type_file_reports(server: Harness,
                                                              corpus: list[tuple[Path, str]]) -> None:
    seen: set[str] = set()
    for path, expected in corpus:
        data = path.read_bytes()
        mime_type = expected.split(";")[0]
        if mime_type in seen or len(data) > 60 * 1024:
            continue
        seen.add(mime_type)
        created = server.client.post("/v1/files", params={"filename": path.name}, content=data)
        assert created.status_code == 201, (path, created.text)
        assert created.json()["mime_type"] == mime_type, path
        served = server.client.get(f"/v1/files/{created.json()['id']}")
        assert served.content == data
        assert served.headers["content-type"].split(";")[0] == mime_type
    assert len(seen) >= 15
