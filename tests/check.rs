//! `ccgate check`: verdicts, positions and exit codes on real files.

use std::io::Write as _;

use crate::util::{assert_no_crash, data, run, texts};

#[test]
fn good_files_exit_0_with_one_line_per_message() {
    let file = data("ok/002.txt");
    let out = run(&["check", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let (stdout, _) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].ends_with("ok/002.txt:1: ok: from \"Smith, Jimmy at Site 1\", 5 recipients, subject \"Lunch, Friday\", 1 items, 279 bytes"), "{}", lines[0]);
    assert!(lines[1].contains("ok/002.txt:18: ok:"), "{}", lines[1]);
}

#[test]
fn broken_messages_give_file_line_column_and_exit_1() {
    let file = data("malformed/001.txt");
    let out = run(&["check", file.to_str().unwrap()]);
    assert_no_crash(&out);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("malformed/001.txt:14:1: error: missing 'Contents:' before an item line"),
        "{stderr}"
    );
    // The good messages around the broken one are still read.
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
}

#[test]
fn dialect_ie8_flags_what_import_rejects() {
    let file = data("ok/008.txt");
    let plain = run(&["check", file.to_str().unwrap()]);
    assert_eq!(plain.status.code(), Some(0));
    let ie5 = run(&["check", "--dialect", "ie5", file.to_str().unwrap()]);
    assert_eq!(ie5.status.code(), Some(0), "Import 5 takes brackets");
    let ie8 = run(&["check", "--dialect", "ie8", file.to_str().unwrap()]);
    let (_, stderr) = texts(&ie8);
    assert_eq!(ie8.status.code(), Some(1));
    assert!(stderr.contains("ok/008.txt:1:1: ie8 rejected: From: \",User [SMTP:User@Domain.com] at EXSITE\" holds '[' or ']'"), "{stderr}");
}

// A review of the contract found `check` without `--dialect` ignoring the configured dialect,
// though its help says it defaults to it.
#[test]
fn without_dialect_the_config_files_dialect_is_checked() {
    let file = data("ok/008.txt");
    let file = file.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = |dialect: &str| {
        let path = dir.path().join(format!("{dialect}.toml"));
        std::fs::write(&path, format!("[legacy]\ndialect = \"{dialect}\"\n")).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ie8, ie5) = (config("ie8"), config("ie5"));
    let rejected = "ok/008.txt:1:1: ie8 rejected: From: \",User [SMTP:User@Domain.com] at EXSITE\" holds '[' or ']'";

    let out = run(&["--config", &ie8, "check", file]);
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(rejected), "{stderr}");

    let out = run(&["--config", &ie5, "check", file]);
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);
    // The flag wins over the file.
    let out = run(&["--config", &ie8, "check", "--dialect", "ie5", file]);
    assert_eq!(out.status.code(), Some(0), "{}", texts(&out).1);

    // `./ccgate.toml`, found without `--config`, counts as well.
    std::fs::copy(&ie8, dir.path().join("ccgate.toml")).unwrap();
    let out = crate::util::ccgate()
        .current_dir(dir.path())
        .args(["check", file])
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(rejected), "{stderr}");
}

#[test]
fn unreadable_file_exits_2_and_usage_errors_exit_2() {
    let out = run(&["check", "/nonexistent/ccgate-test.txt"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        texts(&out)
            .1
            .contains("/nonexistent/ccgate-test.txt: error:")
    );
    assert_eq!(
        run(&["check", "--dialect", "ie9", "x"]).status.code(),
        Some(2)
    );
    assert_eq!(run(&["check"]).status.code(), Some(2));
}

#[test]
fn directory_files_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ccmdir.exp");
    std::fs::write(
        &path,
        "Name: Doe, Jane\r\nLocn: L\r\nAddr: HQ\r\n\r\nName: Bad\r\nLocn: Z\r\n",
    )
    .unwrap();
    let out = run(&["check", path.to_str().unwrap()]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("directory: 2 entries, 1 error\n"),
        "{stdout}"
    );
    assert!(
        stderr.contains("checked 2 directory entries: 1 error\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ccmdir.exp:6:7: error: location code \"Z\""),
        "{stderr}"
    );
}

// A review of the contract found a directory file's check summed up as `checked 1 messages:
// 2 invalid` (entries counted as messages, errors as invalid messages, plurals wrong).
// Entries with errors are still entries (the reader keeps what it could read of them).
#[test]
fn the_summary_counts_messages_and_directory_entries_apart_in_good_english() {
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("one.txt");
    std::fs::write(
        &message,
        "Message:\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\nText item:\r\nhi\r\n",
    )
    .unwrap();
    let directory = dir.path().join("ccmdir.exp");
    std::fs::write(&directory, "Name: Doe, Jane\r\nLocn: Z\r\nAddr: HQ\r\n").unwrap();
    let summary = |files: &[&std::path::Path]| {
        let mut args = vec!["check"];
        args.extend(files.iter().map(|p| p.to_str().unwrap()));
        let out = run(&args);
        assert_no_crash(&out);
        let (stdout, stderr) = texts(&out);
        let last = stderr.lines().last().unwrap_or_default().to_owned();
        (out.status.code(), last, stdout)
    };
    let (code, last, _) = summary(&[&message]);
    assert_eq!(
        (code, last.as_str()),
        (Some(0), "checked 1 message: 0 invalid")
    );
    let (code, last, stdout) = summary(&[&directory]);
    assert_eq!(
        (code, last.as_str()),
        (Some(1), "checked 1 directory entry: 1 error"),
        "{stdout}"
    );
    assert!(stdout.contains("directory: 1 entry, 1 error\n"), "{stdout}");
    let (code, last, _) = summary(&[&message, &directory]);
    assert_eq!(
        (code, last.as_str()),
        (
            Some(1),
            "checked 1 message: 0 invalid; 1 directory entry: 1 error"
        )
    );
}

#[test]
fn hostile_bytes_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed: u64 = 0x5eed;
    for n in 0..20 {
        let path = dir.path().join(format!("hostile-{n}.txt"));
        let mut f = std::fs::File::create(&path).unwrap();
        let mut bytes = b"Message:\r\n99999999999999999\r\nFrom: A at HQ\r\nContents:\r\nText item:\r\n4294967296\r\n".to_vec();
        for _ in 0..4096 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            let pick = (seed >> 33) as usize;
            let tokens: [&[u8]; 8] = [
                b"Message:\r\n",
                b"Contents:\r\n",
                b"Text item:\r\n",
                b"\r\n",
                b"\n",
                b"12\r\n",
                b":",
                b"\0",
            ];
            if pick.is_multiple_of(3) {
                bytes.extend_from_slice(tokens[pick % tokens.len()]);
            } else {
                bytes.push((pick >> 8) as u8);
            }
        }
        f.write_all(&bytes).unwrap();
        let out = run(&["check", "--dialect", "ie8", path.to_str().unwrap()]);
        assert_no_crash(&out);
        assert!(matches!(out.status.code(), Some(0 | 1)), "{out:?}");
    }
}
