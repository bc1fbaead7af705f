//! Progress bars (issue 7, item 4): `check` on a large file, `replay` of many messages and
//! `directory export-legacy` of many rows draw a bar on a terminal (run here under a
//! pseudo-terminal by util-linux `script`), with the usual report still whole; through a pipe
//! they write exactly what they always wrote, without a bar or an escape sequence.

use std::fmt::Write as _;
use std::process::{Command, Output, Stdio};

use crate::route::setup;
use crate::util::{assert_no_crash, require_tool, texts};

/// A legacy message of about 35 KiB (one long text item).
fn legacy_message(n: usize) -> String {
    let mut text = format!(
        "Message:\r\nFrom: Smith, John at HQ\r\nDate: 11/23/26 9:00\r\nTo: Doe, Jane at HQ\r\n\
         Subject: large {n}\r\nContents:\r\nText item:\r\n"
    );
    for line in 0..600 {
        writeln!(
            text,
            "line {line} of a long text item, long enough to add up\r"
        )
        .unwrap();
    }
    text
}

/// Single-quoted for `sh -c`.
fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `ccgate ARGS` on a pseudo-terminal (`script -qfec`) and returns its exit code and
/// everything the terminal received (standard output and error, in order); `None` after the
/// SKIPPED line when `script` is missing.
fn on_terminal(test: &str, args: &[&str]) -> Option<(Option<i32>, String)> {
    let script = require_tool("script", test)?;
    let command = std::iter::once(env!("CARGO_BIN_EXE_ccgate"))
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new(script)
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(std::env::temp_dir())
        .env("TERM", "xterm")
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Some((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// Runs `ccgate ARGS` with standard output and error piped (and a `TERM` that would allow a
/// bar on a terminal).
fn piped(args: &[&str]) -> Output {
    let out = crate::util::ccgate()
        .args(args)
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert_no_crash(&out);
    out
}

/// Asserts the piped run drew nothing: no escape sequence, no carriage return, no bar.
fn assert_no_bar(out: &Output, label: &str) {
    let (stdout, stderr) = texts(out);
    for text in [&stdout, &stderr] {
        assert!(!text.contains('\x1b'), "an escape sequence: {text:?}");
        assert!(!text.contains('\r'), "a carriage return: {text:?}");
    }
    assert!(!stderr.contains(&format!("{label} [")), "a bar: {stderr}");
}

/// Asserts the terminal got the bar (`label [===...] ...` and the terminal's line clearing)
/// and every line of the piped run whole, each on a line of its own.
fn assert_bar_and_report(terminal: &str, label: &str, unit: &str, piped: &Output) {
    assert!(
        terminal.contains(&format!("{label} [")) && terminal.contains("\x1b[2K"),
        "no bar on the terminal: {terminal:?}"
    );
    assert!(
        terminal.contains(unit),
        "no {unit:?} on the bar: {terminal:?}"
    );
    let lines: Vec<&str> = terminal
        .split("\r\n")
        .map(|line| line.rsplit("\x1b[2K").next().unwrap_or(line))
        .collect();
    let (stdout, stderr) = texts(piped);
    for expected in stdout.lines().chain(stderr.lines()) {
        assert!(
            lines.contains(&expected),
            "{expected:?} is not a line of its own on the terminal"
        );
    }
    // Cleared at the end: the last thing on the screen is the summary, not the bar.
    let last = stderr.lines().last().unwrap();
    assert!(
        terminal.trim_end().ends_with(last),
        "the bar was left on the screen: {:?}",
        terminal.get(terminal.len().saturating_sub(300)..)
    );
}

#[test]
fn progress_check_of_a_large_file_shows_a_byte_bar_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("LARGE.EXP");
    // 300 messages of about 35 KiB: over the 8 MiB from which `check` shows a bar.
    let text: String = (0..300).map(legacy_message).collect();
    assert!(text.len() > 8 << 20);
    std::fs::write(&path, text).unwrap();
    let args = ["check", path.to_str().unwrap()];

    let out = piped(&args);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 300);
    assert_eq!(stderr, "checked 300 messages: 0 invalid\n");
    assert_no_bar(&out, "check");

    let Some((code, terminal)) = on_terminal("progress_check", &args) else {
        return;
    };
    assert_eq!(code, Some(0), "{terminal}");
    assert_bar_and_report(&terminal, "check", "MiB/", &out);
    assert!(terminal.contains("LARGE.EXP"), "the file at hand");
}

#[test]
fn progress_replay_counts_messages_or_bytes_only_on_a_terminal() {
    let csv = "display_name,legacy_name,post_office,proxy_addresses,target_address,state\n\
               Jane Doe,\"Doe, Jane\",HQ,SMTP:jane.doe@legacy.example.com,,legacy\n";
    let (dir, config) = setup(Some(csv), "");
    let config = config.to_str().unwrap();
    // A Maildir of 120 messages (a bar over messages) and an mbox of 150 (over bytes): both
    // past the 100 messages from which replay shows a bar.
    let maildir = dir.path().join("stuck");
    std::fs::create_dir_all(maildir.join("cur")).unwrap();
    std::fs::create_dir_all(maildir.join("new")).unwrap();
    let mut mbox = String::new();
    for n in 0..150 {
        let message = format!(
            "From: Alice <alice@example.org>\nTo: jane.doe@legacy.example.com\n\
             Message-ID: <progress-{n}@example.org>\nSubject: {n}\n\nhello {n}\n"
        );
        if n < 120 {
            std::fs::write(maildir.join(format!("new/{n:03}.host")), &message).unwrap();
        }
        write!(
            mbox,
            "From alice@example.org Mon Jan  1 00:00:00 2024\n{message}\n"
        )
        .unwrap();
    }
    let mbox_path = dir.path().join("stuck.mbox");
    std::fs::write(&mbox_path, mbox).unwrap();

    for (input, count, unit) in [
        (maildir.as_path(), 120, "/120 messages"),
        (mbox_path.as_path(), 150, " messages, "),
    ] {
        let args = [
            "--config",
            config,
            "replay",
            "--dry-run",
            input.to_str().unwrap(),
        ];
        let out = piped(&args);
        let (stdout, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(stdout.lines().count(), 2 * count, "{stdout}");
        assert_eq!(
            stderr,
            format!(
                "dry run: {count} message(s): {count} would be queued ({count} recipient(s)), 0 \
                 already replayed, 0 refused, 0 unreadable; nothing was changed\n"
            )
        );
        assert_no_bar(&out, "replay");

        let Some((code, terminal)) = on_terminal("progress_replay", &args) else {
            return;
        };
        assert_eq!(code, Some(0), "{terminal}");
        assert_bar_and_report(&terminal, "replay", unit, &out);
        assert!(!dir.path().join("data").exists(), "a dry run");
    }
}

#[test]
fn progress_directory_export_counts_rows_only_on_a_terminal() {
    // 5,000 migrated users: 10,000 rows, where export-legacy starts showing a bar.
    let mut csv =
        String::from("display_name,legacy_name,post_office,proxy_addresses,target_address,state\n");
    for n in 0..5_000 {
        writeln!(
            csv,
            "User {n},\"User, N{n:04}\",HQ,SMTP:u{n}@legacy.example.com,SMTP:u{n}@modern.example.com,migrated"
        )
        .unwrap();
    }
    let (dir, config) = setup(Some(&csv), "");
    let config = config.to_str().unwrap();
    let outdir = dir.path().join("out");
    let args = [
        "--config",
        config,
        "directory",
        "export-legacy",
        outdir.to_str().unwrap(),
    ];

    let out = piped(&args);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("Ccmdel.imp: 5000 deletions"), "{stdout}");
    assert!(stdout.contains("Ccmdir.imp: 5000 additions"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_no_bar(&out, "export-legacy");
    let additions = std::fs::read(outdir.join("Ccmdir.imp")).unwrap();

    let Some((code, terminal)) = on_terminal("progress_directory", &args) else {
        return;
    };
    assert_eq!(code, Some(0), "{terminal}");
    assert!(
        terminal.contains("export-legacy [") && terminal.contains(" rows "),
        "no bar on the terminal: {terminal:?}"
    );
    for line in stdout.lines() {
        assert!(terminal.contains(&format!("{line}\r\n")), "{line:?} torn");
    }
    assert!(
        terminal.trim_end().ends_with("(KB Q295753)"),
        "{terminal:?}"
    );
    assert_eq!(
        std::fs::read(outdir.join("Ccmdir.imp")).unwrap(),
        additions,
        "the same file with a bar"
    );
}
