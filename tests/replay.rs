//! `ccgate replay` (issue 6, item 5): legacy export files, mbox files, .eml files and Maildir
//! folders back through routing into the queue; a second replay queues nothing; `--dry-run`
//! changes nothing; legacy `.und` files are refused (KB Q168680).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use crate::util::{assert_no_crash, ccgate, texts, wait_for};

const DIRECTORY: &str = "\
display_name,legacy_name,post_office,proxy_addresses,target_address,state
Jane Doe,\"Doe, Jane\",HQ,\"SMTP:jane.doe@legacy.example.com;CCMAIL:Doe, Jane at HQ\",SMTP:jane.doe@modern.example.com,migrated
John Smith,\"Smith, John\",HQ,\"SMTP:john.smith@legacy.example.com;CCMAIL:Smith, John at HQ\",,legacy
Pat Lee,\"Lee, Pat\",HQ,\"SMTP:pat.lee@legacy.example.com;CCMAIL:Lee, Pat at HQ\",SMTP:pat.lee@modern.example.com,migrating
";

/// John (legacy) writes to Jane (migrated) on the legacy side.
const EXPORT: &str = "Message:\r\nFrom: Smith, John at HQ\r\nDate: 11/23/26 9:00\r\nTo: Doe, Jane at HQ\r\n\
Subject: replayed legacy\r\nContents:\r\nText item:\r\nhello Jane\r\n";

/// Two messages: one to John (legacy) with a Message-ID and an mboxrd-escaped line, one
/// without a Message-ID whose envelope recipient (X-Original-To) is Jane's old address.
const MBOX: &str = "From alice@example.org Mon Jan  1 00:00:00 2024\n\
Return-Path: <alice@example.org>\nFrom: Alice <alice@example.org>\nTo: john.smith@legacy.example.com\n\
Message-ID: <replay-one@example.org>\nSubject: one\n\n>From the mbox\n\n\
From bob@example.org Mon Jan  1 00:00:00 2024\nFrom: Bob <bob@example.org>\n\
X-Original-To: jane.doe@legacy.example.com\nTo: team@example.org\nSubject: two\n\nbody two\n";

/// A config in a fresh folder; `smtp` is the listen address.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(smtp: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("directory.csv"), DIRECTORY).unwrap();
        fs::write(
            dir.path().join("ccgate.toml"),
            format!(
                "data_dir = \"data\"\n[smtp]\nlisten = [\"{smtp}\"]\n[legacy]\npoll_interval = \"1s\"\n\
                 [directory]\nsource = \"directory.csv\"\n[admin]\nlisten = \"127.0.0.1:0\"\n"
            ),
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        path
    }

    fn ccgate(&self, args: &[&str]) -> Output {
        let out = ccgate()
            .arg("--config")
            .arg(self.path("ccgate.toml"))
            .args(args)
            .output()
            .unwrap();
        assert_no_crash(&out);
        out
    }

    fn replay(&self, args: &[&Path]) -> (Option<i32>, String, String) {
        let out = ccgate()
            .arg("--config")
            .arg(self.path("ccgate.toml"))
            .arg("replay")
            .args(args)
            .output()
            .unwrap();
        assert_no_crash(&out);
        let (stdout, stderr) = texts(&out);
        (out.status.code(), stdout, stderr)
    }

    /// `ccgate queue list --json`, one value per message.
    fn queue(&self) -> Vec<serde_json::Value> {
        let out = self.ccgate(&["queue", "list", "--json"]);
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "{stderr}");
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// (address, orig_address, destination) of one queued recipient.
type Rcpt = (String, String, String);

/// (sender, recipients) of every queued message, sorted.
fn routes(queue: &[serde_json::Value]) -> Vec<(String, Vec<Rcpt>)> {
    let mut out: Vec<_> = queue
        .iter()
        .map(|m| {
            let rcpts = m["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    let address = r["address"].as_str().unwrap().to_owned();
                    let orig = r["orig_address"].as_str().unwrap_or(&address).to_owned();
                    (address, orig, r["destination"].as_str().unwrap().to_owned())
                })
                .collect();
            (m["sender"].as_str().unwrap().to_owned(), rcpts)
        })
        .collect();
    out.sort();
    out
}

fn route(address: &str, orig: &str, lane: &str) -> Rcpt {
    (address.to_owned(), orig.to_owned(), lane.to_owned())
}

#[test]
fn replay_queues_legacy_and_mbox_once_and_dry_run_changes_nothing() {
    let setup = Setup::new("127.0.0.1:0");
    let export = setup.write("EXPORT.TXT", EXPORT);
    let mbox = setup.write("stuck.mbox", MBOX);
    let inputs: [&Path; 2] = [&export, &mbox];

    // --dry-run: the routing of each recipient, and nothing written.
    let (code, stdout, stderr) = setup.replay(&[Path::new("--dry-run"), &export, &mbox]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("EXPORT.TXT:1: <")
            && stdout.contains("jane.doe@legacy.example.com -> modern jane.doe@modern.example.com"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "stuck.mbox:1: <replay-one@example.org> john.smith@legacy.example.com -> legacy john.smith@legacy.example.com"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("stuck.mbox:10: sha256:"),
        "a message without Message-ID is known by its content hash: {stdout}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(
        !setup.path("data").exists(),
        "a dry run creates no data folder, ledger or spool"
    );

    // The real replay: three messages queued, routed by the directory.
    let (code, stdout, stderr) = setup.replay(&inputs);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches(": queued as ").count(), 3, "{stdout}");
    assert!(stdout.contains("EXPORT.TXT:1: queued as "), "{stdout}");
    assert!(stdout.contains("stuck.mbox:1: queued as "), "{stdout}");
    assert!(stdout.contains("stuck.mbox:10: queued as "), "{stdout}");
    let queue = setup.queue();
    assert_eq!(
        routes(&queue),
        vec![
            (
                "alice@example.org".to_owned(),
                vec![route(
                    "john.smith@legacy.example.com",
                    "john.smith@legacy.example.com",
                    "legacy"
                )]
            ),
            (
                "bob@example.org".to_owned(),
                vec![route(
                    "jane.doe@modern.example.com",
                    "jane.doe@legacy.example.com",
                    "modern"
                )]
            ),
            (
                "john.smith@legacy.example.com".to_owned(),
                vec![route(
                    "jane.doe@modern.example.com",
                    "jane.doe@legacy.example.com",
                    "modern"
                )]
            ),
        ]
    );
    // The mbox message is stored unescaped, with CR LF line ends.
    let alice = queue
        .iter()
        .find(|m| m["sender"] == "alice@example.org")
        .unwrap();
    let show = setup.ccgate(&["queue", "show", alice["queue_id"].as_str().unwrap()]);
    let (shown, _) = texts(&show);
    assert!(shown.contains("\r\n\r\nFrom the mbox\r\n"), "{shown}");
    assert!(!shown.contains(">From the mbox"), "{shown}");

    // Again: nothing new.
    let (code, stdout, stderr) = setup.replay(&inputs);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("already replayed").count(), 3, "{stdout}");
    assert!(!stdout.contains("queued as"), "{stdout}");
    assert_eq!(setup.queue().len(), 3);

    // A dry run now says the same and still changes nothing.
    let ledger = fs::read(setup.path("data/ledger.log")).unwrap();
    let (code, stdout, _) = setup.replay(&[Path::new("--dry-run"), &export, &mbox]);
    assert_eq!(code, Some(0));
    assert_eq!(stdout.matches("already replayed").count(), 3, "{stdout}");
    assert_eq!(fs::read(setup.path("data/ledger.log")).unwrap(), ledger);
    assert_eq!(setup.queue().len(), 3);

    // A crash after the spool took the messages and before the ledger recorded them (here:
    // the ledger lost): the keys in the spool records complete it, nothing is queued twice.
    fs::remove_file(setup.path("data/ledger.log")).unwrap();
    let (code, stdout, stderr) = setup.replay(&inputs);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("the ledger lacked 3 key(s)"), "{stderr}");
    assert_eq!(stdout.matches("already replayed").count(), 3, "{stdout}");
    assert_eq!(setup.queue().len(), 3);
}

#[test]
fn replay_refuses_und_files_and_unknown_recipients_and_reads_maildir_folders() {
    let setup = Setup::new("127.0.0.1:0");
    // The undeliverable file of a failed import: never replayed, whatever it holds.
    let und = setup.write("import/MSG0001.UND", EXPORT);
    let (code, stdout, stderr) = setup.replay(&[&und]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("MSG0001.UND: error:") && stderr.contains("Q168680"),
        "{stderr}"
    );
    assert!(setup.queue().is_empty());

    // A Maildir folder: one message with a known and an unknown recipient, one for Pat
    // (being migrated: held in the cutover lane).
    setup.write(
        "stuck/cur/1.host:2,S",
        "From: Carol <carol@example.org>\nTo: john.smith@legacy.example.com, ghost@legacy.example.com\n\
         Message-ID: <carol@example.org>\nSubject: c\n\nhi\n",
    );
    setup.write(
        "stuck/new/2.host",
        "Return-Path: <dave@example.org>\nFrom: dave@example.org\nTo: pat.lee@legacy.example.com\n\
         Message-ID: <dave@example.org>\nSubject: d\n\nhi\n",
    );
    let (code, stdout, stderr) = setup.replay(&[&setup.path("stuck")]);
    assert_eq!(
        code,
        Some(1),
        "a refused recipient: exit 1\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("queued as ")
            && stdout.contains("to 1 recipient(s); refused ghost@legacy.example.com (550 5.1.1"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("queued as ").count(), 2, "{stdout}");
    let queue = routes(&setup.queue());
    assert_eq!(
        queue,
        vec![
            (
                "carol@example.org".to_owned(),
                vec![route(
                    "john.smith@legacy.example.com",
                    "john.smith@legacy.example.com",
                    "legacy"
                )]
            ),
            (
                "dave@example.org".to_owned(),
                vec![route(
                    "pat.lee@legacy.example.com",
                    "pat.lee@legacy.example.com",
                    "cutover"
                )]
            ),
        ]
    );
    // The folder again: the known recipients are not queued twice.
    let (_, stdout, _) = setup.replay(&[&setup.path("stuck")]);
    assert!(!stdout.contains("queued as"), "{stdout}");
    assert_eq!(setup.queue().len(), 2);
}

/// A `ccgate run` on the setup's config; killed (by PID) on drop.
struct Running(Child);

impl Running {
    fn start(setup: &Setup) -> Self {
        let mut child = ccgate()
            .arg("--config")
            .arg(setup.path("ccgate.toml"))
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the banner").unwrap();
            if line.starts_with("ccgate: admin") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Self(child)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn replay_next_to_a_running_gateway_goes_through_its_pickup_and_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let setup = Setup::new(&format!("127.0.0.1:{port}"));
    let _gateway = Running::start(&setup);
    let export = setup.write("EXPORT.TXT", EXPORT);
    let mbox = setup.write("stuck.mbox", MBOX);
    let inputs: [&Path; 2] = [&export, &mbox];
    let (code, stdout, stderr) = setup.replay(&inputs);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("EXPORT.TXT:1: handed to the running gateway's pickup"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("queued as ").count(),
        2,
        "the mbox through SMTP: {stdout}"
    );
    // Jane gets the legacy message (through the pickup) and Bob's (through SMTP).
    let maildir = setup.path("data/modern/new");
    let count = || fs::read_dir(&maildir).map_or(0, Iterator::count);
    wait_for(Duration::from_secs(20), || (count() >= 2).then_some(()))
        .unwrap_or_else(|| panic!("Jane's two messages were not delivered"));
    let pickup = setup.path("data/legacy/outbound");
    let empty = || fs::read_dir(&pickup).map_or(0, Iterator::count) == 0;
    wait_for(Duration::from_secs(20), || empty().then_some(()))
        .unwrap_or_else(|| panic!("the pickup did not take the handed-over file"));
    // Again, once the pickup has taken the file in: nothing new anywhere.
    let (code, stdout, stderr) = setup.replay(&inputs);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("already replayed").count(), 3, "{stdout}");
    // Nothing was handed over or sent: the pickup folder is still empty and the queue drains
    // with Jane's two messages delivered, no third.
    assert!(empty(), "nothing handed over again");
    wait_for(Duration::from_secs(20), || {
        setup.queue().is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("the queue did not drain: {:?}", setup.queue()));
    assert_eq!(count(), 2);
}

// A legacy recipient nobody has (legacy.unknown_recipients = "bounce", the default): the
// replay report says the sender will get a non-delivery report for it.
#[test]
fn replay_says_which_legacy_recipients_will_be_bounced() {
    let setup = Setup::new("127.0.0.1:0");
    let export = setup.write(
        "GHOST.TXT",
        "Message:\r\nFrom: Smith, John at HQ\r\nTo: Ghost at SMTPGW\r\nTo: Doe, Jane at HQ\r\nSubject: ghost\r\nContents:\r\nText item:\r\nboo\r\n",
    );
    let (code, stdout, stderr) = setup.replay(&[export.as_path()]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("queued as")
            && stdout.contains(
                "to be bounced to the sender (5.1.1, not in the directory): IMCEACCMAIL-Ghost"
            ),
        "{stdout}"
    );
}

/// John (a directory user, on the legacy side) wrote to the Internet; the mail got stuck.
const OUTBOUND: &str = "Return-Path: <john.smith@legacy.example.com>\nFrom: John Smith \
<john.smith@legacy.example.com>\nTo: bob@example.net\nMessage-ID: <outbound-1@legacy.example.com>\n\
Subject: stuck outbound\n\nhello Bob\n";

/// Someone outside writes to someone outside: replaying it would be relaying.
const FOREIGN: &str = "Return-Path: <mallory@example.org>\nFrom: mallory@example.org\n\
To: victim@example.net\nMessage-ID: <foreign-1@example.org>\nSubject: relay me\n\nspam\n";

// Replay is the administrator's own submission (Postfix trusts its sendmail and pickup the same
// way): our user's mail to an outside address goes to the modern next hop, as legacy-origin
// mail to such an address does; a foreign sender's mail to an outside address stays refused.
/// The replay of `outbound.eml` and `foreign.eml` together: the first queued, the second
/// refused (exit 1).
fn assert_outbound_queued_foreign_refused(code: Option<i32>, stdout: &str, stderr: &str) {
    assert_eq!(
        code,
        Some(1),
        "the foreign message is refused\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("outbound.eml: queued as ") && stdout.contains("to 1 recipient(s)"),
        "{stdout}"
    );
}

/// Waits for `outbound.eml` in the modern next hop (the Maildir here).
fn wait_outbound_delivered(setup: &Setup) {
    let maildir = setup.path("data/modern/new");
    let delivered = wait_for(Duration::from_secs(20), || {
        let entry = fs::read_dir(&maildir).ok()?.next()?.ok()?;
        fs::read_to_string(entry.path()).ok()
    })
    .unwrap_or_else(|| panic!("the outbound message was not delivered"));
    assert!(
        delivered.contains("Delivered-To: bob@example.net") && delivered.contains("hello Bob"),
        "{delivered}"
    );
}

#[test]
fn replay_sends_our_users_outbound_mail_to_the_next_hop_and_refuses_relaying_for_others() {
    let setup = Setup::new("127.0.0.1:0");
    let outbound = setup.write("outbound.eml", OUTBOUND);
    let foreign = setup.write("foreign.eml", FOREIGN);

    let (code, stdout, stderr) = setup.replay(&[Path::new("--dry-run"), &outbound]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("bob@example.net -> modern bob@example.net"),
        "{stdout}"
    );

    let (code, stdout, stderr) = setup.replay(&[&outbound, &foreign]);
    assert_outbound_queued_foreign_refused(code, &stdout, &stderr);
    assert!(
        stdout.contains("foreign.eml: refused: <foreign-1@example.org>: victim@example.net (554 5.7.1 relay access denied: neither the sender mallory@example.org nor the recipient is ours"),
        "{stdout}"
    );
    assert_eq!(
        routes(&setup.queue()),
        vec![(
            "john.smith@legacy.example.com".to_owned(),
            vec![route("bob@example.net", "bob@example.net", "modern")]
        )]
    );
    // Delivered by a gateway started afterwards: into the modern next hop (the Maildir here).
    let _gateway = Running::start(&setup);
    wait_outbound_delivered(&setup);
}

// Next to a running gateway, our users' outbound mail cannot go through its SMTP listener
// (which relays for nobody): replay hands it to the gateway's spool through the control folder,
// and the gateway delivers it to the next hop; foreign mail is refused as relaying, as without
// a gateway; a second replay queues nothing.
#[test]
fn replay_next_to_a_running_gateway_hands_outbound_mail_to_its_spool() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let setup = Setup::new(&format!("127.0.0.1:{port}"));
    let _gateway = Running::start(&setup);
    let outbound = setup.write("outbound.eml", OUTBOUND);
    let foreign = setup.write("foreign.eml", FOREIGN);
    let (code, stdout, stderr) = setup.replay(&[&outbound, &foreign]);
    assert_outbound_queued_foreign_refused(code, &stdout, &stderr);
    assert!(
        stdout.contains("foreign.eml: refused: <foreign-1@example.org>: victim@example.net (554 5.7.1 relay access denied: neither the sender"),
        "{stdout}"
    );
    wait_outbound_delivered(&setup);
    // The control folder is left empty, and a second replay queues nothing.
    let control = setup.path("data/queue/control");
    assert!(control.is_dir(), "{}", control.display());
    let leftovers = || {
        fs::read_dir(&control).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with(".sub") || name.ends_with(".msg")
                })
                .count()
        })
    };
    wait_for(Duration::from_secs(20), || (leftovers() == 0).then_some(()))
        .unwrap_or_else(|| panic!("the submission was left in {}", control.display()));
    let (code, stdout, stderr) = setup.replay(&[&outbound]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("already replayed"), "{stdout}");
    assert_eq!(
        fs::read_dir(setup.path("data/modern/new")).unwrap().count(),
        1
    );
}
