#!/usr/bin/env python3
"""Writes the synthetic Import/Export fixtures of this folder.

No public sample of the legacy format exists (legacy-format.md §1), so the fixtures follow the
shape of the KB articles cited beside each one. Sizes are computed the way ccgate settles the
/ITEMSIZE rule: each size line counts the bytes after it to the end of its block; an item's
count excludes the CR LF written after its data. Run it from this folder; it overwrites
ok/, malformed/ and export/ *.txt (not the .expected files: the golden test writes those with
UPDATE_EXPECT=1).
"""
import os

CRLF = b"\r\n"


def item(kind, title, data, sized=True, eol=CRLF):
    head = f"{kind} item:".encode() + ((b" " + title) if title else b"") + eol
    if sized:
        return head + str(len(data)).encode() + eol + data + eol
    return head + data + eol


def message(headers, items, sized=True, eol=CRLF, contents_size=None, size=None):
    hdr = b"".join(k.encode() + b": " + v + eol for k, v in headers)
    contents = b"".join(items)
    if sized:
        csize = str(len(contents) if contents_size is None else contents_size).encode()
        body = hdr + b"Contents:" + eol + csize + eol + contents
        msize = str(len(body) if size is None else size).encode()
        return b"Message:" + eol + msize + eol + body
    return b"Message:" + eol + hdr + b"Contents:" + eol + contents


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


KB_BODY = b"This is a test message."

# ok/001: the import file of KB Q184052, sized (From/Date/To/Subject, one untitled text item).
write("ok/001.txt", message(
    [("From", b"Administrator at HUBPO1"), ("Date", b"6/2/98 8:39"), ("To", b"Ccuser at HUBPO2"),
     ("Subject", b"Test")],
    [item("Text", b"", KB_BODY)]))

# ok/002: unsized, LF line ends, two messages; repeated To/Cc/Bcc (Q243184), unknown keywords
# kept in order (Priority, RRT: Q262989), a body line that looks like a header.
lf = b"\n"
write("ok/002.txt",
      message([("From", b"Smith, Jimmy at Site 1"), ("Date", b"11/4/03 9:05"),
               ("To", b"Doe, Jane at HQ"), ("To", b"Roe, Richard at HQ"), ("Cc", b"#Social at PO5"),
               ("Bcc", b"Ccuser at DB8"), ("Bcc", b"Ccuser2 at DB8"), ("Priority", b"Urgent"),
               ("RRT", b"Yes"), ("Subject", b"Lunch, Friday")],
              [item("Text", b"Note", b"Friday works.\nFrom: the desk of Jimmy\n\nCheers", sized=False, eol=lf)],
              sized=False, eol=lf)
      + message([("From", b"Roe, Richard at HQ"), ("To", b"Smith, Jimmy at Site 1"), ("Subject", b"RE: Lunch, Friday")],
                [item("Text", b"", b"Yes.", sized=False, eol=lf)], sized=False, eol=lf))

# ok/003: a file item with the exporter's date stamp (Q166610) and binary data holding CR LF
# and a line "Message:", safe because it is counted; then a second text item.
binary = bytes(range(0, 32)) + b"\r\nMessage:\r\nContents:\r\n" + bytes(range(200, 256))
write("ok/003.txt", message(
    [("From", b"Doe, Jane at HQ"), ("Date", b"5/6/97 3:10PM"), ("To", b"jsmith@example.com at SMTPGW"),
     ("Subject", b"Budget")],
    [item("Text", b"", b"Figures attached.\r\n"), item("File", b"Abc.wk4 5/6/97 3:10PM", binary),
     item("File", b"Att.txt 9-11-1998", b"plain attachment")]))

# ok/004: zero-length text item (Q178122), fax, graphics, sound and a forwarded message item
# with a title (Q184991), and an item kind nobody documented.
write("ok/004.txt", message(
    [("From", b"Doe, Jane at HQ"), ("To", b"Roe, Richard at HQ"), ("Subject", b"Kinds")],
    [item("Text", b"", b""), item("Fax", b"Fax from Bob", b"\x00\x01fax"), item("Graphics", b"Logo", b"GIF89a"),
     item("Sound", b"Hello", b"RIFF"), item("Message", b"Fwd: Budget", b"From: X at Y\r\nbody"),
     item("Video", b"clip", b"\x00")]))

# ok/005: IBM437 text: accented names and box drawing in the body.
write("ok/005.txt", message(
    [("From", "Müller, Jürgen at BERLIN".encode("cp437")), ("To", b"Doe, Jane at HQ"),
     ("Subject", "Grüße".encode("cp437"))],
    [item("Text", b"", "Café ╔═╗ ½ £ ñ".encode("cp437"))]))

# ok/006: blocks not separated by CR LF (Q184391): sized data runs straight into the next
# keyword, and the second message follows the first with no line end.
m1 = message([("From", b"A at HQ"), ("To", b"B at HQ")], [item("Text", b"", b"one", eol=CRLF)[:-2]])
m2 = message([("From", b"B at HQ"), ("To", b"A at HQ")], [item("Text", b"", b"two")])
write("ok/006.txt", m1 + m2)

# ok/007: keywords in any case, extra blank lines between messages, trailing blanks.
write("ok/007.txt",
      b"\r\n\r\nMESSAGE:\r\nfrom: lower at HQ\r\nTO: UPPER at HQ\r\nsubject: case\r\nCONTENTS:  \r\ntext ITEM: t\r\nbody\r\n\r\n\r\n"
      + message([("From", b"X at HQ"), ("To", b"Y at HQ")], [item("Text", b"", b"sized")]))

# ok/008: the address forms of legacy-format.md §7 on To: lines (one per line, never split on
# commas): bare ANR names, leading-comma one-offs, bracketed Exchange forms, quoted display names.
write("ok/008.txt", message(
    [("From", b",User [SMTP:User@Domain.com] at EXSITE"), ("To", b"Doe, Jane"), ("To", b",Smith, Grover at Ferguson"),
     ("To", b"[ccmail:smith,grover at ferguson]"), ("To", b"\"User; Test\" at SMTPGW"), ("To", b"SERVICE@EXAMPLE.COM at PMDF"),
     ("To", b"John Smith AT rpo"), ("To", b"Schedule+ Free Busy Information - NorthAmerica at NorthAmerica"),
     ("Subject", b"Forms")],
    [item("Text", b"", b"x")]))

# malformed/001: a message without Contents: (Q234745) between two good ones.
write("malformed/001.txt",
      message([("From", b"A at HQ"), ("To", b"B at HQ")], [item("Text", b"", b"first")])
      + b"Message:\r\nFrom: C at HQ\r\nTo: D at HQ\r\nSubject: no contents\r\nText item:\r\nlost\r\n"
      + message([("From", b"E at HQ"), ("To", b"F at HQ")], [item("Text", b"", b"third")]))

# malformed/002: junk before the first Message: (the Wizard's "Invalid Token '6'", Q184391).
write("malformed/002.txt", b"6\r\nstray line\r\n" + message([("From", b"A at HQ"), ("To", b"B at HQ")], [item("Text", b"", b"ok")]))

# malformed/003: a header line without a colon, then a good message.
write("malformed/003.txt",
      b"Message:\r\nFrom: A at HQ\r\nTo B at HQ\r\nContents:\r\nText item:\r\nx\r\n"
      + message([("From", b"A at HQ"), ("To", b"B at HQ")], [item("Text", b"", b"ok")]))

# malformed/004: size lines that lie: a message size too large and an item size too small, in
# one file; both are read by lines with a warning.
write("malformed/004.txt",
      message([("From", b"A at HQ"), ("To", b"B at HQ")], [item("Text", b"", b"size too large")], size=9999)
      + b"Message:\r\n60\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\nText item:\r\n3\r\nsize too small\r\n")

# malformed/005: a line after Contents: that is not an item.
write("malformed/005.txt",
      b"Message:\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\nHello without an item line\r\n"
      + message([("From", b"A at HQ"), ("To", b"B at HQ")], [item("Text", b"", b"ok")]))

# malformed/006: a file cut in the middle of a counted item.
full = message([("From", b"A at HQ"), ("To", b"B at HQ")], [item("Text", b"", b"0123456789" * 10)])
write("malformed/006.txt", full[: len(full) - 50])

# malformed/007: hostile size lines (a 19-digit size, a 25-digit "size") and NUL bytes.
write("malformed/007.txt",
      b"Message:\r\n9999999999999999999\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\n1234567890123456789012345\r\nText item:\r\n9999999999999999999\r\n\x00\x00\r\n")

# malformed/008: a date in the wrong order for the post office (Q180641) is kept as text with a
# warning; the message is still read.
write("malformed/008.txt", message([("From", b"A at HQ"), ("Date", b"31/12/98 10:00"), ("To", b"B at HQ")],
                                   [item("Text", b"", b"ok")]))

# export/001: what the Migration Wizard's Export run (/ITEMSIZE /FOLDER, Q186740) looks like in
# ccgate's reading: Folder headers, an R8 stationery message with no subject or body (Q174255).
write("export/001.txt",
      message([("From", b"Doe, Jane at HQ"), ("Date", b"12/31/99 23:59"), ("To", b"Doe, Jane at HQ"), ("Folder", b"Inbox"),
               ("Subject", b"Y2K")], [item("Text", b"", b"Happy new year.\r\nSee you in 2000.")])
      + message([("From", b"Doe, Jane at HQ"), ("Date", b"1/1/00 0:00"), ("To", b"Doe, Jane at HQ"), ("Folder", b"Stationery")], []))
