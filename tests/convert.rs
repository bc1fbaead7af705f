//! `ccgate convert --to mime|legacy FILE`: outputs, positions and exit codes on real files.

use std::io::Write as _;
use std::path::PathBuf;

use crate::util::{assert_no_crash, data, run, texts};

/// A fixture of the conversion crate.
fn eml(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("crates/convert/tests/data")
        .join(name)
}

fn temp_file(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    file.flush().unwrap();
    file
}

const ONE_MESSAGE: &[u8] = b"Message:\r\nFrom: Doe, Jane at HQ\r\nDate: 6/2/98 8:39\r\nTo: someone@example.org at SMTPGW\r\nSubject: Budget\r\nPriority: Urgent\r\nContents:\r\nText item:\r\nSee you.\r\nFile item: BUDGET.WK4 5/6/97 3:10PM\r\nabc\r\n";

#[test]
fn one_legacy_message_becomes_one_rfc5322_message() {
    let file = temp_file(ONE_MESSAGE);
    let path = file.path().to_str().unwrap();
    let out = run(&["convert", "--to", "mime", path]);
    assert_no_crash(&out);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with("Date: Tue, 2 Jun 1998 08:39:00 +0000\r\n"),
        "{stdout}"
    );
    for expected in [
        "From: \"Doe, Jane\" <Doe_Jane@legacy.example.com>\r\n",
        "To: <someone@example.org>\r\n",
        "Subject: Budget\r\n",
        "Importance: high\r\n",
        "Message-ID: <",
        "filename=\"BUDGET.WK4\"",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in {stdout}");
    }
    // Deterministic: a second run gives the same bytes.
    let again = run(&["convert", "--to", "mime", path]);
    assert_eq!(out.stdout, again.stdout);
}

#[test]
fn several_legacy_messages_become_an_mbox() {
    let file = data("ok/002.txt");
    let out = run(&["convert", "--to", "mime", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let starts: Vec<&str> = stdout.lines().filter(|l| l.starts_with("From ")).collect();
    assert_eq!(starts.len(), 2, "{stdout}");
    assert!(
        starts[0].starts_with("From Smith_Jimmy%Site.1@legacy.example.com "),
        "{}",
        starts[0]
    );
    // mboxrd: the body line "From: the desk of Jimmy" is a header-like line, not a From_ line;
    // the header "From:" lines are not quoted either (no space after From).
    assert!(stdout.contains("\nFrom: \"Smith, Jimmy\""), "{stdout}");
    assert!(!stdout.contains('\r'));
}

#[test]
fn broken_legacy_messages_give_file_line_column_and_exit_1() {
    let file = data("malformed/001.txt");
    let out = run(&["convert", "--to", "mime", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("malformed/001.txt:14:1: error: missing 'Contents:' before an item line"),
        "{stderr}"
    );
    // The good messages around it are converted.
    assert_eq!(stdout.lines().filter(|l| l.starts_with("From ")).count(), 2);
}

#[test]
fn rfc5322_becomes_import_text_that_check_accepts() {
    let out = run(&[
        "convert",
        "--to",
        "legacy",
        eml("base64-attachment.eml").to_str().unwrap(),
    ]);
    assert_no_crash(&out);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(out.stdout.starts_with(b"Message:\r\n"));
    for expected in [
        "From: bob@example.net at SMTPGW\r\n",
        "To: Doe, Jane at HQ\r\n",
        "Subject: The report\r\n",
        "File item: Quarterly Report.pdf\r\n",
        "File item: ATT00001.DAT\r\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in {stdout}");
    }
    let file = temp_file(&out.stdout);
    let check = run(&["check", "--dialect", "ie8", file.path().to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "{:?}", texts(&check));
}

#[test]
fn broken_mime_still_converts_with_a_note() {
    let out = run(&[
        "convert",
        "--to",
        "legacy",
        eml("broken-boundary.eml").to_str().unwrap(),
    ]);
    assert_no_crash(&out);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("File item: ORIGINAL.EML\r\n"), "{stdout}");
    assert!(
        stderr.contains("broken-boundary.eml:1:1: note: "),
        "{stderr}"
    );
}

#[test]
fn legacy_to_mime_to_legacy_through_the_cli() {
    let file = temp_file(ONE_MESSAGE);
    let mime = run(&["convert", "--to", "mime", file.path().to_str().unwrap()]);
    let eml = temp_file(&mime.stdout);
    let back = run(&["convert", "--to", "legacy", eml.path().to_str().unwrap()]);
    let (stdout, stderr) = texts(&back);
    assert_eq!(back.status.code(), Some(0), "{stderr}");
    for expected in [
        "From: Doe, Jane at HQ\r\n",
        "Date: 6/2/98 8:39\r\n",
        "To: someone@example.org at SMTPGW\r\n",
        "Subject: Budget\r\n",
        "Priority: Urgent\r\n",
        "See you.\r\n",
        "File item: BUDGET.WK4\r\n3\r\nabc\r\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in {stdout}");
    }
}

#[test]
fn unreadable_files_exit_2() {
    for to in ["mime", "legacy"] {
        let out = run(&["convert", "--to", to, "/nonexistent/ccgate-convert.txt"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            texts(&out)
                .1
                .contains("/nonexistent/ccgate-convert.txt: error:")
        );
    }
}
