//! `ccgate route` on the router's test directory (crates/router/tests/data/directory.csv):
//! every routing rule of docs/directory.md, text and JSON output, exit codes.

use std::path::{Path, PathBuf};

use crate::util::{assert_no_crash, ccgate, texts};

/// A config in a fresh folder using the router's test directory (or `csv` when given).
pub fn setup(csv: Option<&str>, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let directory = match csv {
        Some(text) => {
            let path = dir.path().join("directory.csv");
            std::fs::write(&path, text).unwrap();
            path
        }
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/router/tests/data/directory.csv")
        }
    };
    let config = dir.path().join("ccgate.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n[legacy]\npost_office = \"HQ\"\ngateway_po = \"SMTPGW\"\ndomain = \"legacy.example.com\"\n[modern]\ndomain = \"modern.example.com\"\n[directory]\nsource = {:?}\n{extra}",
            directory.display().to_string()
        ),
    )
    .unwrap();
    (dir, config)
}

/// Runs `ccgate --config CONFIG ARGS`.
pub fn run_with(config: &Path, args: &[&str]) -> std::process::Output {
    let out = ccgate()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    assert_no_crash(&out);
    out
}

#[test]
fn route_explains_each_case_of_section_5() {
    let (_dir, config) = setup(None, "");
    let cases: &[(&[&str], &str)] = &[
        (
            &["jane.doe@legacy.example.com"],
            "jane.doe@legacy.example.com: legacy \"Doe, Jane at HQ\"; origin smtp; entry line 4 \"Doe, Jane\" (Jane Doe), state legacy, matched SMTP:jane.doe@legacy.example.com; why: legacy user: deliver into the legacy post office",
        ),
        (
            &["Smith, Bob at HQ"],
            "Smith, Bob at HQ: modern \"bob.smith@modern.example.com\"; origin legacy; entry line 5 \"Smith, Bob\" (Bob Smith), state migrated, matched legacy_name Smith, Bob at HQ; why: migrated user: deliver to the modern next hop as the target address (the old legacy mailbox gets nothing, KB Q253306)",
        ),
        (
            &["carol.jones@legacy.example.com"],
            "carol.jones@legacy.example.com: hold (until migrated, then modern \"carol.jones@modern.example.com\"); origin smtp; entry line 6 \"Jones, Carol\" (Carol Jones), state migrating, matched SMTP:carol.jones@legacy.example.com; why: migrating user, cutover = hold",
        ),
        (
            &["cjones at BRANCH"],
            "matched MIGRATE:CCMAIL:cjones at BRANCH",
        ),
        (
            &["nobody@legacy.example.com"],
            "nobody@legacy.example.com: reject 550 5.1.1 no such user here; origin smtp; no directory entry; why: in our domain but matches no directory entry",
        ),
        (
            &["someone@outside.test"],
            "someone@outside.test: reject 554 5.7.1 relay access denied; origin smtp; no directory entry; why: outside our domains and arrived by SMTP: relay denied",
        ),
        (
            &["someone@outside.test at SMTPGW"],
            "someone@outside.test at SMTPGW: modern \"someone@outside.test\"; origin legacy; no directory entry; why: carries the SMTP address someone@outside.test; outside address sent from the legacy side: the modern next hop relays it",
        ),
        (
            &["--from", "Doe, Jane at HQ", "someone@outside.test"],
            "someone@outside.test: modern \"someone@outside.test\"; origin legacy; no directory entry; sender Doe, Jane at HQ -> Jane Doe <jane.doe@legacy.example.com>; why: outside address",
        ),
        (
            &["--from", "ann@outside.test", "Doe, Jane"],
            "Doe, Jane: legacy \"Doe, Jane at HQ\"; origin smtp; entry line 4",
        ),
        (
            &["--from", "ann@outside.test", "jane.doe@legacy.example.com"],
            "; sender ann@outside.test -> ann@outside.test at SMTPGW; why:",
        ),
        (
            &["--from", "Nobody, Known at HQ", "x@outside.test"],
            "sender Nobody, Known at HQ -> \"Nobody, Known\" <IMCEACCMAIL-Nobody+2C+20Known+20at+20HQ@legacy.example.com>",
        ),
        // What the gateway writes for a sender the legacy side cannot hold (brackets in ie8).
        (
            &["--from", "x@[192.0.2.1]", "jane.doe@legacy.example.com"],
            "; sender x@[192.0.2.1] -> \"Unknown sender\" at SMTPGW; why:",
        ),
        (
            &[
                "--from",
                "\"john doe\"@outside.test",
                "jane.doe@legacy.example.com",
            ],
            "; origin smtp; entry line 4",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["route"];
        all.extend_from_slice(args);
        let out = run_with(&config, &all);
        let (stdout, stderr) = texts(&out);
        assert!(
            stdout.contains(expected),
            "{args:?}\n{stdout}\n{stderr}\nwanted: {expected}"
        );
    }
}

// `ccgate route Postmaster` (SMTP's `<Postmaster>`) and `postmaster@` each of our domains say
// the same: postmaster@ the host name, on the modern side.
#[test]
fn route_says_the_same_of_postmaster_and_postmaster_at_our_domains() {
    let (_dir, config) = setup(None, "[smtp]\nhostname = \"gw.example.net\"\n");
    let forms = [
        "Postmaster",
        "<postmaster>",
        "postmaster@legacy.example.com",
        "POSTMASTER@Modern.Example.com",
        "postmaster@gw.example.net",
    ];
    let mut args = vec!["route"];
    args.extend(forms);
    let out = run_with(&config, &args);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), forms.len(), "{stdout}");
    for (line, form) in lines.iter().zip(forms) {
        let said = line
            .strip_prefix(&format!("{form}: "))
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(
            said,
            "modern \"postmaster@gw.example.net\"; origin smtp; no directory entry; why: postmaster of a domain this gateway serves (RFC 5321 4.5.1), not in the directory: to postmaster@ the gateway's host name on the modern next hop, where RCPT TO:<Postmaster> goes",
            "{form}"
        );
    }
}

#[test]
fn route_exit_code_is_1_when_a_recipient_is_rejected() {
    let (_dir, config) = setup(None, "");
    let ok = run_with(
        &config,
        &[
            "route",
            "jane.doe@legacy.example.com",
            "carol.jones@legacy.example.com",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{:?}", texts(&ok));
    assert_eq!(texts(&ok).0.lines().count(), 2);
    let rejected = run_with(
        &config,
        &[
            "route",
            "jane.doe@legacy.example.com",
            "nobody@legacy.example.com",
        ],
    );
    assert_eq!(rejected.status.code(), Some(1));
    assert_eq!(texts(&rejected).0.lines().count(), 2);
    let unreadable = run_with(&config, &["route", "<a@b"]);
    assert_eq!(unreadable.status.code(), Some(1));
    assert!(
        texts(&unreadable).1.contains("ccgate: route: \"<a@b\""),
        "{:?}",
        texts(&unreadable)
    );
}

#[test]
fn route_cutover_legacy_delivers_migrating_users_to_legacy() {
    let (_dir, config) = setup(None, "[migration]\ncutover = \"legacy\"\n");
    let out = run_with(&config, &["route", "carol.jones@legacy.example.com"]);
    assert!(
        texts(&out)
            .0
            .starts_with("carol.jones@legacy.example.com: legacy \"Jones, Carol at BRANCH\""),
        "{:?}",
        texts(&out)
    );
}

#[test]
fn route_json_has_one_object_per_recipient() {
    let (_dir, config) = setup(None, "");
    let out = run_with(
        &config,
        &[
            "route",
            "--json",
            "--from",
            "ann@outside.test",
            "Smith, Bob",
            "nobody@modern.example.com",
        ],
    );
    let (stdout, _) = texts(&out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let bob = &lines[0];
    assert_eq!(bob["recipient"], "Smith, Bob");
    assert_eq!(bob["origin"], "smtp");
    assert_eq!(bob["destination"], "modern");
    assert_eq!(bob["rewritten_recipient"], "bob.smith@modern.example.com");
    assert_eq!(bob["state"], "migrated");
    assert_eq!(bob["matched"], "legacy_name Smith, Bob at HQ");
    assert_eq!(bob["entry"]["legacy_name"], "Smith, Bob");
    assert_eq!(bob["entry"]["line"], 5);
    assert_eq!(bob["rewritten_sender"], "ann@outside.test at SMTPGW");
    assert_eq!(bob["sender_form"], "foreign");
    let nobody = &lines[1];
    assert_eq!(nobody["destination"], "reject");
    assert_eq!(nobody["code"], "550 5.1.1");
    assert!(nobody["entry"].is_null());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn route_refuses_a_directory_with_problems() {
    let (_dir, config) = setup(
        Some(
            "legacy_name,post_office,proxy_addresses,state\n\"Doe, Jane\",HQ,,legacy\n\"DOE, JANE\",HQ,,legacy\n",
        ),
        "",
    );
    let out = run_with(&config, &["route", "x@legacy.example.com"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        texts(&out)
            .1
            .contains("directory.csv:3:2: legacy name \"DOE, JANE\" is also line 2"),
        "{:?}",
        texts(&out)
    );
}
