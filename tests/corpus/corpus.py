#!/usr/bin/env python3
"""The real-mail corpus: published test messages that nobody here wrote,
plus variants of some of them carrying the damage real mail carries.

    python3 corpus.py seed MAILDIR     writes every message into MAILDIR/new/
                                       and prints a JSON list of the file
                                       names, in order
    python3 corpus.py list             prints each message's name and traits

Sources (see README.md in this folder for versions and licences):
- cpython/: the test messages of CPython's `email` package
  (Lib/test/test_email/data/msg_*.txt, shipped with Python 3.11).
- mail-parser/: the test mails of the `mail-parser` package on PyPI
  (version 4.8.0, tests/mails/): real-world and malformed mail, one of them
  a binary Outlook file.

The variants are made by the functions below from published messages, each
with one kind of damage that the published set lacks or has too little of:
raw Latin-1 and raw UTF-8 in a header (what old software and SMTPUTF8
produce instead of encoded-words), LF line ends mixed into a CRLF message,
lines of only ".", a 200,000-octet line, old-Mac lone CR line ends, and a
message whose last line is a lone CR (Dovecot sends that as CR CRLF).
"""
import email.header
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("cpython", "mail-parser")


def published():
    """Every published message: {"source-file": bytes}, in name order."""
    out = {}
    for source in SOURCES:
        folder = os.path.join(HERE, source)
        for name in sorted(os.listdir(folder)):
            if name in ("LICENSE", "NOTICE"):
                continue
            with open(os.path.join(folder, name), "rb") as f:
                out["%s-%s" % (source, name.replace(".txt", ""))] = f.read()
    return out


def decoded_subject(message, charset):
    """The message with its encoded-word Subject written as raw octets."""
    def raw(match):
        text = "".join(
            part.decode(enc or "ascii") if isinstance(part, bytes) else part
            for part, enc in email.header.decode_header(match.group(1).decode("ascii")))
        return b"Subject: " + text.encode(charset)
    return re.sub(rb"Subject: (=\?[^\r\n]*)", raw, message, count=1)


def variants(pub):
    lf_crlf = pub["mail-parser-mail_test_17"]
    plain = pub["cpython-msg_01"]
    lines = lf_crlf.split(b"\r\n")
    mixed = b"".join(line + (b"\n" if i % 2 else b"\r\n") for i, line in enumerate(lines[:-1])) + lines[-1]
    return {
        "variant-latin1-subject": decoded_subject(pub["mail-parser-mail_test_5"], "iso-8859-1"),
        "variant-utf8-subject": decoded_subject(pub["mail-parser-mail_test_5"], "utf-8"),
        "variant-lf-in-crlf": mixed,
        "variant-crlf-no-final-newline": lf_crlf.rstrip(b"\r\n"),
        "variant-dot-lines": plain + b".\n..\n.leading dot\n. \n.\r\n...\n",
        "variant-long-line": plain + b"x" * 200_000 + b"\n",
        "variant-mac-cr": plain.replace(b"\n", b"\r"),
        "variant-last-line-lone-cr": plain + b"\r",
    }


def messages():
    pub = published()
    out = dict(pub)
    out.update(variants(pub))
    return out


def traits(data):
    end = min((i for i in (data.find(b"\n\n"), data.find(b"\r\n\r\n")) if i >= 0), default=len(data))
    header = data[:end]
    found = []
    if any(b > 127 for b in header):
        try:
            header.decode("utf-8")
            found.append("utf8-header")
        except UnicodeDecodeError:
            found.append("8bit-header")
    if b"\0" in data:
        found.append("nul")
    if b"\r\n" in data:
        found.append("crlf")
    if b"\r" in data.replace(b"\r\n", b""):
        found.append("bare-cr")
    if data and not data.endswith(b"\n"):
        found.append("no-final-newline")
    if max(len(line) for line in data.split(b"\n")) > 998:
        found.append("long-line")
    if re.search(rb"(^|\n)\.\r?(\n|$)", data):
        found.append("dot-line")
    return found


def file_names():
    """Maildir names: a fixed time, the message's name as the unique part,
    so UIDLs are stable and say which message they are."""
    return ["%d.%s.corpus" % (1700000000 + i, re.sub(r"[^A-Za-z0-9_-]", "_", name))
            for i, name in enumerate(messages())]


def seed(maildir):
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    names = file_names()
    for name, data in zip(names, messages().values()):
        with open(os.path.join(maildir, "new", name), "wb") as f:
            f.write(data)
    return names


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"] and len(sys.argv) == 3:
        print(json.dumps(seed(sys.argv[2])))
    elif sys.argv[1:] == ["list"]:
        for name, data in messages().items():
            print("%-40s %8d  %s" % (name, len(data), " ".join(traits(data))))
    else:
        sys.exit(__doc__)
