"""A corpus of real files of many types: samples found on this machine plus files generated here."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import py_compile
import sqlite3
import struct
import sys
import sysconfig
import tarfile
import wave
import zipfile
import zlib
from pathlib import Path

# Where to look for real files, and how many of each extension to take.
SEARCH_ROOTS = ("/usr/share/doc", "/usr/share/fonts", "/usr/share/pixmaps", "/usr/share/prometheus",
                "/usr/share/gitweb", "/usr/share/vim", "/usr/share/python-wheels", "/usr/share/distro-info",
                "/usr/share/zoneinfo/Europe", "/usr/share/icons", "/usr/share/perl5", "/usr/share/mime",
                "/usr/share/man/man1", "/usr/share/locale/de", "/usr/share/maven-repo", "/usr/share/misc",
                "/usr/share/fonts-glyphicons", "/usr/libexec/coreutils", "/usr/share/ca-certificates")
EXTENSIONS = ("png", "jpg", "gif", "svg", "ico", "xpm", "pdf", "ps", "gz", "zip", "jar", "html", "xml", "json",
              "css", "js", "mo", "ttf", "otf", "woff", "woff2", "pem", "crt", "so", "txt", "md", "csv", "py",
              "sh", "pl", "pm", "lua", "whl", "yaml", "pom", "bz2", "xz", "", "1", "tar", "svgz", "mp3")
PER_EXTENSION = 3
MAX_BYTES = 2 * 1024 * 1024
MAX_WALK = 60_000


def real_files() -> list[Path]:
    """Up to PER_EXTENSION readable regular files per extension from SEARCH_ROOTS, deterministic order."""
    found: dict[str, list[Path]] = {ext: [] for ext in EXTENSIONS}
    walked = 0
    for root in SEARCH_ROOTS:
        for directory, subdirs, names in os.walk(root):
            subdirs.sort()
            for name in sorted(names):
                walked += 1
                path = Path(directory) / name
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                bucket = found.get(ext)
                if bucket is None or len(bucket) >= PER_EXTENSION:
                    continue
                try:
                    if path.is_symlink() or not path.is_file() or not 0 < path.stat().st_size <= MAX_BYTES:
                        continue
                    path.open("rb").close()
                except OSError:
                    continue
                bucket.append(path)
            if walked > MAX_WALK:
                break
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    extras = [Path("/bin/ls"), Path("/usr/bin/file"), Path(sys.executable).resolve(),
              stdlib / "json" / "__init__.py", stdlib / "LICENSE.txt",
              *sorted((stdlib / "lib-dynload").glob("*.so"))[:2], *sorted((stdlib / "__pycache__").glob("*.pyc"))[:2],
              *sorted((stdlib / "ensurepip" / "_bundled").glob("*.whl"))[:1]]
    return [p for bucket in found.values() for p in bucket] + [p for p in extras if p.is_file()]


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes((x * 8 % 256, y * 8 % 256, 128)) * 32 for y in range(32) for x in range(1))
    header = struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _pdf() -> bytes:
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>"]
    out = io.BytesIO(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    out.seek(0, io.SEEK_END)
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 4\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size 4 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def _bmp() -> bytes:
    pixels = b"\x00\x00\xff" * 4 * 4
    return (b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, 4, 4, 1, 24, 0, len(pixels), 2835, 2835, 0, 0) + pixels)


def _gif() -> bytes:
    return (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
            b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as audio:
        audio.setnchannels(1)
        audio.setsampwidth(2)
        audio.setframerate(8000)
        audio.writeframes(b"\x00\x01" * 800)
    return out.getvalue()


def _zip(names: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in names.items():
            archive.writestr(name, data)
    return out.getvalue()


def _tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        data = b"inside a tarball\n" * 20
        info = tarfile.TarInfo("notes.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def generated_files(directory: Path) -> list[Path]:
    """Write files of many formats with the standard library; return their paths."""
    text = ("The quick brown fox jumps over the lazy dog.\n" * 40).encode()
    samples: dict[str, bytes] = {
        "image.png": _png(), "doc.pdf": _pdf(), "image.bmp": _bmp(), "image.gif": _gif(), "sound.wav": _wav(),
        "archive.zip": _zip({"a.txt": text, "b.json": b'{"a": 1}'}), "archive.tar": _tar(),
        "text.gz": gzip.compress(text, mtime=0), "text.bz2": bz2.compress(text), "text.xz": lzma.compress(text),
        "archive.tar.gz": gzip.compress(_tar(), mtime=0),
        "ascii.txt": text, "utf8.txt": "Grüße aus Köln, naïve café — ☕\n".encode() * 20,
        "latin1.txt": "Grüße aus Köln, café\n".encode("latin-1") * 20,
        "utf16.txt": "\ufeffwide text for everyone\n".encode("utf-16-le") * 20,
        "data.json": json.dumps({"items": [{"id": i, "name": f"n{i}"} for i in range(50)]}, indent=2).encode(),
        "data.csv": b"id,name,score\n" + b"".join(b"%d,name%d,%d.5\n" % (i, i, i) for i in range(60)),
        "page.html": b"<!DOCTYPE html>\n<html><head><title>t</title></head><body><p>hi</p></body></html>\n",
        "feed.xml": b'<?xml version="1.0" encoding="UTF-8"?>\n<feed><entry><title>x</title></entry></feed>\n',
        "icon.svg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n',
        "script.sh": b"#!/bin/sh\nset -eu\necho hello\n", "script.py": b"#!/usr/bin/env python3\nprint('hi')\n",
        "doc.rtf": b"{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}}\\f0 Hello}\n",
        "page.ps": b"%!PS-Adobe-3.0\n%%Pages: 1\n/Times findfont 12 scalefont setfont\nshowpage\n",
        "photo.jpg": bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffdb004300") + b"\x08" * 64 + b"\xff\xd9",
        "random.bin": bytes((i * 7919 + 13) % 251 for i in range(4096)),
        "one-byte.bin": b"\x00", "archive.7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24,
        "image.ico": b"\x00\x00\x01\x00\x01\x00\x10\x10\x00\x00\x01\x00\x20\x00" + struct.pack("<II", 68, 22)
        + b"\x00" * 68,
    }
    paths = []
    for name, data in samples.items():
        path = directory / name
        path.write_bytes(data)
        paths.append(path)
    database = directory / "store.sqlite"
    with sqlite3.connect(database) as connection:
        connection.execute("create table t (a integer, b text)")
        connection.executemany("insert into t values (?, ?)", [(i, str(i)) for i in range(100)])
    connection.close()
    source = directory / "module.py"
    source.write_text("VALUE = 42\n")
    compiled = Path(py_compile.compile(str(source), cfile=str(directory / "module.pyc")))
    return [*paths, database, source, compiled]
