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

/// A legacy message from Jane (migrated) to John (still on the legacy side) and a name the
/// directory does not hold.
const DIRECTORY_MESSAGE: &[u8] = b"Message:\r\nFrom: Doe, Jane at HQ\r\nDate: 6/2/98 8:39\r\nTo: Smith, John at HQ\r\nCc: Nobody, Here at HQ\r\nSubject: Budget\r\nContents:\r\nText item:\r\nSee you.\r\n";

// See: the contract's `ccgate convert` ("routing-free address mapping from the directory").
#[test]
fn addresses_are_mapped_with_the_directory_as_the_gateway_maps_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("directory.csv"),
        "display_name,legacy_name,post_office,proxy_addresses,target_address,state\n\
         Jane Doe,\"Doe, Jane\",HQ,\"SMTP:jane.doe@legacy.example.com;CCMAIL:Doe, Jane at HQ\",SMTP:jane.doe@modern.example.com,migrated\n\
         John Smith,\"Smith, John\",HQ,\"SMTP:john.smith@legacy.example.com;CCMAIL:Smith, John at HQ\",,legacy\n",
    )
    .unwrap();
    let config = dir.path().join("ccgate.toml");
    let write_config = |source: &str| {
        std::fs::write(
            &config,
            format!(
                "data_dir = \"data\"\n[legacy]\ndomain = \"legacy.example.com\"\n\
                 [modern]\ndomain = \"modern.example.com\"\n[directory]\nsource = \"{source}\"\n"
            ),
        )
        .unwrap();
    };
    write_config("directory.csv");
    let convert = |to: &str, file: &std::path::Path| {
        let out = crate::util::ccgate()
            .arg("--config")
            .arg(&config)
            .args(["convert", "--to", to])
            .arg(file)
            .output()
            .unwrap();
        assert_no_crash(&out);
        assert_eq!(out.status.code(), Some(0), "{:?}", texts(&out));
        texts(&out)
    };
    let legacy = temp_file(DIRECTORY_MESSAGE);
    let (stdout, stderr) = convert("mime", legacy.path());
    for expected in [
        "From: \"Jane Doe\" <jane.doe@legacy.example.com>\r\n",
        "To: \"John Smith\" <john.smith@legacy.example.com>\r\n",
        // Not in the directory: the gateway's generated form.
        "Cc: \"Nobody, Here\" <IMCEACCMAIL-Nobody+2C+20Here+20at+20HQ@legacy.example.com>\r\n",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in {stdout}");
    }
    assert!(!stderr.contains("without the directory"), "{stderr}");
    let eml = temp_file(
        b"From: Jane <jane.doe@modern.example.com>\r\nTo: john.smith@legacy.example.com\r\n\
          Subject: hi\r\n\r\nbody\r\n",
    );
    let (stdout, _) = convert("legacy", eml.path());
    assert!(stdout.contains("To: Smith, John at HQ\r\n"), "{stdout}");

    // No directory to be had: said on standard error, and the directory-free map is used.
    write_config("missing.csv");
    let (stdout, stderr) = convert("mime", legacy.path());
    assert!(
        stderr.contains("missing.csv: cannot read the directory")
            && stderr.contains("addresses are mapped without the directory"),
        "{stderr}"
    );
    assert!(
        stdout.contains("To: \"Smith, John\" <Smith_John@legacy.example.com>\r\n"),
        "{stdout}"
    );
}
