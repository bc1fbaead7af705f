//! `ccgate directory check` and `ccgate directory export-legacy OUTDIR` on real files.

use crate::route::{run_with, setup};
use crate::util::{assert_no_crash, ccgate, texts};

#[test]
fn directory_check_reports_each_problem_with_its_position() {
    let (_dir, config) = setup(None, "");
    let ok = run_with(&config, &["directory", "check"]);
    assert_eq!(ok.status.code(), Some(0), "{:?}", texts(&ok));
    assert!(
        texts(&ok)
            .0
            .contains("ok: 5 entries (2 legacy, 1 migrating, 2 migrated)"),
        "{:?}",
        texts(&ok)
    );

    let bad = "# a broken directory\n\
        display_name,legacy_name,post_office,proxy_addresses,target_address,state\n\
        Jane,\"Doe, Jane\",HQ,SMTP:jane@legacy.example.com,,legacy\n\
        Jim,\"DOE, jane\",HQ2,smtp:JANE@legacy.example.com,,legacy\n\
        Kim,\"Kim, A\",HQ,SMTP:bad,,asleep\n\
        Lee,\"Lee, B\",HQ,,,migrated\n\
        x,y\n";
    let (_dir, config) = setup(Some(bad), "");
    let out = run_with(&config, &["directory", "check"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for expected in [
        "directory.csv:4:6: legacy name \"DOE, jane\" is also line 3",
        "directory.csv:4:21: address \"smtp:JANE@legacy.example.com\" also belongs to line 3",
        "directory.csv:5:17: bad proxy address \"SMTP:bad\"",
        "directory.csv:5:27: state \"asleep\" is not legacy, migrating or migrated",
        "directory.csv:6:18: target_address is empty (required for this state)",
        "directory.csv:7:1: row has 2 fields, the header has 6",
    ] {
        assert!(stderr.contains(expected), "{stderr}\nwanted: {expected}");
    }
    assert_eq!(stderr.lines().count(), 6, "{stderr}");
    assert!(stdout.contains("6 problem(s)"), "{stdout}");

    let (_dir, config) = setup(None, "");
    let missing = config.with_file_name("missing.toml");
    std::fs::write(&missing, "[directory]\nsource = \"nowhere.csv\"\n").unwrap();
    let out = run_with(&missing, &["directory", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        texts(&out)
            .1
            .contains("nowhere.csv: cannot read the directory"),
        "{:?}",
        texts(&out)
    );
}

#[test]
fn export_legacy_writes_deletions_then_additions() {
    let (dir, config) = setup(None, "");
    let outdir = dir.path().join("out");
    let out = run_with(
        &config,
        &["directory", "export-legacy", outdir.to_str().unwrap()],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Ccmdel.imp: 2 deletions"), "{stdout}");
    assert!(stdout.contains("Ccmdir.imp: 2 additions"), "{stdout}");
    let deletions = std::fs::read_to_string(outdir.join("Ccmdel.imp")).unwrap();
    assert_eq!(
        deletions,
        "Name: Moved, Erin\r\nLocn: L\r\nAddr: HQ\r\nComments: ccgate: migrated, old mailbox entry\r\n\r\n\
         Name: Smith, Bob\r\nLocn: L\r\nAddr: HQ\r\nComments: ccgate: migrated, old mailbox entry\r\n\r\n"
    );
    let additions = std::fs::read_to_string(outdir.join("Ccmdir.imp")).unwrap();
    assert_eq!(
        additions,
        "Name: Moved, Erin\r\nLocn: r\r\nAddr: erin@legacy.example.com at SMTPGW\r\nComments: ccgate: migrated, mail through the gateway\r\n\r\n\
         Name: Smith, Bob\r\nLocn: r\r\nAddr: bob.smith@modern.example.com at SMTPGW\r\nComments: ccgate: migrated, mail through the gateway\r\n\r\n"
    );
    // What a legacy user then sends to the old name comes through the gateway to the new mailbox.
    for (name, target) in [
        ("Smith, Bob", "bob.smith@modern.example.com"),
        ("Moved, Erin", "erin.moved@modern.example.com"),
    ] {
        let addr = additions
            .split("\r\n\r\n")
            .find(|block| block.contains(name))
            .and_then(|block| block.lines().find_map(|l| l.strip_prefix("Addr: ")))
            .unwrap();
        let routed = run_with(&config, &["route", "--json", addr]);
        let value: serde_json::Value = serde_json::from_str(texts(&routed).0.trim()).unwrap();
        assert_eq!(value["destination"], "modern", "{addr}");
        assert_eq!(value["rewritten_recipient"], target, "{addr}");
    }
    // The files read back as legacy directory files.
    let check = ccgate()
        .arg("check")
        .arg(outdir.join("Ccmdir.imp"))
        .output()
        .unwrap();
    assert_no_crash(&check);
}
