//! The coexistence relay end to end (issue 6): `ccgate run` with a directory, the legacy post
//! office as folders, the modern side a Maildir; mail both ways, replies both ways, cutover
//! hold and release, a poisoned import, a file picked up twice.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{RawSmtp, ccgate};

/// A running gateway on a temporary folder; killed on drop.
struct Relay {
    dir: tempfile::TempDir,
    child: Child,
    smtp: String,
    admin: String,
    /// What the gateway logged after its banner.
    log: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    fn start(extra_legacy: &str) -> Self {
        Self::start_with(extra_legacy, "")
    }

    /// As [`Relay::start`], with more tables (`[modern]`, say) at the end of the config.
    fn start_with(extra_legacy: &str, extra_tables: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(&data).unwrap();
        fs::write(data.join("directory.csv"), SAMPLE_DIRECTORY).unwrap();
        let config = format!(
            "data_dir = \"data\"\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"gw.test\"\n\
             [legacy]\npoll_interval = \"1s\"\n{extra_legacy}\n[directory]\nsource = \"data/directory.csv\"\n\
             [queue]\nretry = [\"1s\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n{extra_tables}"
        );
        fs::write(dir.path().join("ccgate.toml"), config).unwrap();
        let mut child = ccgate()
            .arg("--config")
            .arg(dir.path().join("ccgate.toml"))
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut smtp = None;
        let admin = loop {
            let line = lines
                .next()
                .expect("ccgate run printed its banner")
                .unwrap();
            if let Some(rest) = line.strip_prefix("ccgate: smtp") {
                smtp = Some(rest.split_whitespace().next().unwrap().to_owned());
            }
            if let Some(rest) = line.strip_prefix("ccgate: admin") {
                let url = rest.split_whitespace().next().unwrap();
                break url
                    .trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_owned();
            }
        };
        let smtp = smtp.expect("the banner names the SMTP address before the admin one");
        // Keep draining the log so the gateway never blocks on a full pipe.
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        Self {
            dir,
            child,
            smtp,
            admin,
            log,
        }
    }

    /// A gateway whose `[modern]` next hop is `hop`.
    fn to_next_hop(hop: &NextHop) -> Self {
        Self::start_with(
            "",
            &format!(
                "[modern]\nnext_hop = \"smtp://127.0.0.1:{}\"\nconnect_timeout = \"5s\"\n",
                hop.port
            ),
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Sends one message by SMTP; answers the reply to the end of data, or the command refused
    /// and its reply.
    fn send(&self, from: &str, to: &str, message: &str) -> String {
        let mut smtp = RawSmtp::open(&self.smtp);
        for command in [
            "EHLO client.test".to_owned(),
            format!("MAIL FROM:<{from}>"),
            format!("RCPT TO:<{to}>"),
            "DATA".to_owned(),
        ] {
            let r = smtp.cmd(&command);
            if !(r.code / 100 == 2 || r.code == 354) {
                // Refused before the data: that reply, with the command it answered.
                let _ = smtp.send(b"QUIT\r\n");
                return format!("{command} -> {}", r.first());
            }
        }
        smtp.send(message.replace('\n', "\r\n").as_bytes()).unwrap();
        smtp.send(b"\r\n.\r\n").unwrap();
        let end = smtp.reply().expect("a reply to the end of data");
        let _ = smtp.send(b"QUIT\r\n");
        end.first()
    }

    /// Waits for the message holding `marker` in the modern Maildir; the message and its
    /// envelope sender (the address the gateway issued for the legacy sender).
    fn delivered_with_sender(&self, marker: &str) -> (String, String) {
        let mail = wait_for("the message in the modern Maildir", || {
            self.maildir().into_iter().find(|m| m.contains(marker))
        });
        let return_path = header(&mail, "Return-Path");
        let sender = return_path[0]
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned();
        (mail, sender)
    }

    /// Alice replies to `to` (which must be accepted); the import file holding `marker`.
    fn reply_imported(&self, to: &str, message: &str, marker: &str) -> String {
        let reply = self.send("alice@example.org", to, message);
        assert!(reply.starts_with("250"), "{to}: {reply}");
        wait_for("the reply as an import file", || {
            self.imports()
                .into_iter()
                .map(|p| fs::read_to_string(p).unwrap())
                .find(|t| t.contains(marker))
        })
    }

    /// Puts an export file into the pickup folder (written under a hidden name, then renamed).
    fn export(&self, name: &str, text: &str) {
        let pickup = self.data().join("legacy/outbound");
        fs::create_dir_all(&pickup).unwrap();
        let tmp = pickup.join(format!(".{name}"));
        fs::write(&tmp, text.replace('\n', "\r\n")).unwrap();
        fs::rename(tmp, pickup.join(name)).unwrap();
    }

    fn maildir(&self) -> Vec<String> {
        files(&self.data().join("modern/new"))
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect()
    }

    fn imports(&self) -> Vec<PathBuf> {
        files(&self.data().join("legacy/inbound"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "CCM"))
            .collect()
    }

    /// The first log line containing every one of `words`.
    fn logged(&self, words: &[&str]) -> Option<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|line| words.iter().all(|w| line.contains(w)))
            .cloned()
    }

    /// `ccgate queue list --json` on this gateway's spool.
    fn queue_list(&self) -> String {
        let list = ccgate()
            .arg("--config")
            .arg(self.dir.path().join("ccgate.toml"))
            .args(["queue", "list", "--json"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&list.stdout).into_owned()
    }

    /// A legacy message from John to "Ghost at SMTPGW" (nobody) and Jane; waits for Jane's copy.
    fn ghost_for_jane(&self) {
        self.export("GHOST.TXT", "Message:\nFrom: Smith, John at HQ\nTo: Ghost at SMTPGW\nTo: Doe, Jane at HQ\nSubject: ghost\nContents:\nText item:\nboo\n");
        wait_for("Jane's copy", || {
            self.maildir().into_iter().find(|m| m.contains("boo"))
        });
    }

    fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SAMPLE_DIRECTORY: &str = "\
display_name,legacy_name,post_office,proxy_addresses,target_address,state
Jane Doe,\"Doe, Jane\",HQ,\"SMTP:jane.doe@legacy.example.com;CCMAIL:Doe, Jane at HQ\",SMTP:jane.doe@modern.example.com,migrated
John Smith,\"Smith, John\",HQ,\"SMTP:john.smith@legacy.example.com;CCMAIL:Smith, John at HQ\",,legacy
Pat Lee,\"Lee, Pat\",HQ,\"SMTP:pat.lee@legacy.example.com;CCMAIL:Lee, Pat at HQ\",SMTP:pat.lee@modern.example.com,migrating
";

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of a header line in legacy or MIME text.
fn header<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
        .map(str::trim)
        .collect()
}

// See: issue 6 ("replies work both ways"; KB Q253306).
#[test]
fn relays_both_ways_and_replies_come_back() {
    let relay = Relay::start("");
    // SMTP to a legacy user becomes an import file the format crate accepts for ie8.
    let reply = relay.send("alice@example.org", "john.smith@legacy.example.com", "From: Alice <alice@example.org>\nTo: john.smith@legacy.example.com\nSubject: [EXT] budget [v2]\n\nHello John.");
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let import = wait_for("an import file", || relay.imports().into_iter().next());
    let check = ccgate()
        .args(["check", "--dialect", "ie8"])
        .arg(&import)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let text = fs::read_to_string(&import).unwrap();
    assert_eq!(header(&text, "To"), ["Smith, John at HQ"]);
    assert_eq!(header(&text, "Subject"), ["(EXT) budget (v2)"]);
    let from = header(&text, "From")[0].to_owned();
    assert_eq!(from, "alice@example.org at SMTPGW");

    // John replies from the legacy side to the address he was shown: it reaches Alice.
    relay.export("REPLY1.TXT", &format!("Message:\nFrom: Smith, John at HQ\nDate: 11/23/26 10:05\nTo: {from}\nSubject: RE: budget\nContents:\nText item:\nThanks Alice.\n"));
    let to_alice = wait_for("John's reply in the modern Maildir", || {
        relay
            .maildir()
            .into_iter()
            .find(|m| m.contains("Thanks Alice."))
    });
    assert_eq!(header(&to_alice, "Delivered-To"), ["alice@example.org"]);
    let john = header(&to_alice, "From")[0].to_owned();
    assert!(john.contains("john.smith@legacy.example.com"), "{john}");

    // Alice replies to that From: it comes back to John's legacy mailbox.
    let reply = relay.send(
        "alice@example.org",
        "john.smith@legacy.example.com",
        "Subject: RE: RE: budget\n\nYou're welcome.",
    );
    assert!(reply.starts_with("250"), "{reply}");
    let second = wait_for("a second import file", || {
        relay
            .imports()
            .into_iter()
            .find(|p| fs::read_to_string(p).unwrap().contains("welcome"))
    });
    assert_eq!(
        header(&fs::read_to_string(second).unwrap(), "To"),
        ["Smith, John at HQ"]
    );

    // The old legacy name of a migrated user no longer reaches the old mailbox (KB Q253306).
    relay.export("TOJANE.TXT", "Message:\nFrom: Smith, John at HQ\nTo: Doe, Jane at HQ\nSubject: lunch\nContents:\nText item:\nLunch at noon?\n");
    let to_jane = wait_for("mail for Jane's new mailbox", || {
        relay
            .maildir()
            .into_iter()
            .find(|m| m.contains("Lunch at noon?"))
    });
    assert_eq!(
        header(&to_jane, "Delivered-To"),
        ["jane.doe@modern.example.com"]
    );
    assert!(
        files(&relay.data().join("legacy/inbound"))
            .iter()
            .all(|p| !fs::read_to_string(p).unwrap().contains("Lunch at noon")),
        "nothing for the stale legacy mailbox"
    );
}

// A review of the contract found SMTP mail without `From:` reaching the legacy side as from
// "Unknown sender" though the envelope sender was known.
#[test]
fn mail_without_from_is_from_its_envelope_sender_on_the_legacy_side() {
    let relay = Relay::start("");
    let reply = relay.send(
        "alice@example.org",
        "john.smith@legacy.example.com",
        "To: john.smith@legacy.example.com\nSubject: no from\n\nmarker-envelope-sender",
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    // The null sender has no address to give: the placeholder stays.
    let reply = relay.send(
        "",
        "john.smith@legacy.example.com",
        "To: john.smith@legacy.example.com\nSubject: null sender\n\nmarker-null-sender",
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let imported = |marker: &str| {
        wait_for("the import file", || {
            relay
                .imports()
                .into_iter()
                .map(|p| fs::read_to_string(p).unwrap())
                .flat_map(|t| t.split("Message:").map(str::to_owned).collect::<Vec<_>>())
                .find(|m| m.contains(marker))
        })
    };
    let text = imported("marker-envelope-sender");
    assert_eq!(header(&text, "From"), ["alice@example.org at SMTPGW"]);
    assert_eq!(header(&text, "To"), ["Smith, John at HQ"]);
    let text = imported("marker-null-sender");
    assert_eq!(header(&text, "From"), ["\"Unknown sender\" at SMTPGW"]);
    assert!(
        relay
            .logged(&["sender is taken from the envelope", "alice@example.org"])
            .is_some()
    );
}

// See: issue 5 and 6 ("cutover hold and release").
#[test]
fn mail_for_a_user_being_migrated_is_held_then_released() {
    let relay = Relay::start("");
    let reply = relay.send(
        "alice@example.org",
        "pat.lee@legacy.example.com",
        "Subject: during the move\n\nhold me",
    );
    assert!(reply.starts_with("250"), "{reply}");
    // Routed and parked: once the queue says held, no attempt is due, so nothing can be in
    // flight to the Maildir or the drop folder.
    let listed = wait_for("the message held in the cutover lane", || {
        let listed = relay.queue_list();
        (listed.contains("cutover") && listed.contains("held")).then_some(listed)
    });
    assert!(
        relay.maildir().is_empty() && relay.imports().is_empty(),
        "held, not delivered and not bounced: {listed}"
    );
    // The administrator switches Pat to migrated and reloads.
    let csv = relay.data().join("directory.csv");
    fs::write(
        &csv,
        fs::read_to_string(&csv).unwrap().replace(
            "pat.lee@modern.example.com,migrating",
            "pat.lee@modern.example.com,migrated",
        ),
    )
    .unwrap();
    relay.signal("HUP");
    let released = wait_for("the held message in Pat's new mailbox", || {
        relay.maildir().into_iter().find(|m| m.contains("hold me"))
    });
    assert_eq!(
        header(&released, "Delivered-To"),
        ["pat.lee@modern.example.com"]
    );
}

// SIGHUP reloads the router's settings too: mail held for a user being migrated goes to the
// legacy post office once `[migration] cutover` says "legacy"; new sessions get new
// `max_message_size` and `max_recipients`; a key the listener is built with
// (`smtp.hostname`) still waits for a restart, and says so.
#[test]
fn sighup_applies_a_changed_cutover_to_held_mail() {
    let relay = Relay::start_with("", "[migration]\ncutover = \"hold\"\n");
    let reply = relay.send(
        "alice@example.org",
        "pat.lee@legacy.example.com",
        "Subject: during the move\n\nto the old mailbox after all",
    );
    assert!(reply.starts_with("250"), "{reply}");
    wait_for("the message held in the cutover lane", || {
        let listed = relay.queue_list();
        (listed.contains("cutover") && listed.contains("held")).then_some(listed)
    });
    assert!(relay.imports().is_empty());
    let config = relay.dir.path().join("ccgate.toml");
    let text = fs::read_to_string(&config).unwrap();
    let edited = text
        .replace("cutover = \"hold\"", "cutover = \"legacy\"")
        .replace(
            "hostname = \"gw.test\"",
            "hostname = \"gw2.test\"\nmax_message_size = 500000\nmax_recipients = 1",
        );
    assert_ne!(edited, text);
    fs::write(&config, &edited).unwrap();
    relay.signal("HUP");
    wait_for("the new SMTP limits in effect", || {
        relay.logged(&[
            "configuration changed; in effect now",
            "smtp.max_recipients",
        ])
    });
    // New sessions get the new limits: SIZE in EHLO, and a second recipient is refused.
    let mut c = RawSmtp::open(&relay.smtp);
    let ehlo = c.cmd("EHLO client.test");
    assert!(
        ehlo.lines.iter().any(|l| l.contains("SIZE 500000")),
        "{:?}",
        ehlo.lines
    );
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<john.smith@legacy.example.com>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<jane.doe@legacy.example.com>").code, 452);
    assert_eq!(c.cmd("QUIT").code, 221);
    wait_for("the new cutover in effect", || {
        relay.logged(&["configuration changed; in effect now", "migration.cutover"])
    });
    wait_for("the restart warning for smtp.hostname", || {
        relay.logged(&["takes effect at the next restart", "smtp.hostname"])
    });
    let import = wait_for("the held message as an import file", || {
        relay.imports().into_iter().find(|p| {
            fs::read_to_string(p).is_ok_and(|t| t.contains("to the old mailbox after all"))
        })
    });
    let text = fs::read_to_string(&import).unwrap();
    assert_eq!(header(&text, "To"), ["Lee, Pat at HQ"], "{text}");
    assert!(
        relay.logged(&["in effect now", "smtp.hostname"]).is_none(),
        "smtp.hostname must not be applied live"
    );
    // New mail for Pat now goes straight to the legacy side too.
    let reply = relay.send(
        "alice@example.org",
        "pat.lee@legacy.example.com",
        "Subject: after the reload\n\nstraight to legacy",
    );
    assert!(reply.starts_with("250"), "{reply}");
    wait_for("the new message as an import file", || {
        relay
            .imports()
            .into_iter()
            .find(|p| fs::read_to_string(p).is_ok_and(|t| t.contains("straight to legacy")))
    });
}

// SIGHUP puts a new `import_command` in service for the import files written from then on.
#[test]
fn sighup_applies_a_new_import_command() {
    let relay = Relay::start("");
    let script_dir = tempfile::tempdir().unwrap();
    let marker = script_dir.path().join("imported.txt");
    let script = script_dir.path().join("import.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nbasename \"$1\" >> '{}'\nexit 0\n",
            marker.display()
        ),
    )
    .unwrap();
    let _ = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status();
    let config = relay.dir.path().join("ccgate.toml");
    let text = fs::read_to_string(&config).unwrap();
    let edited = text.replace(
        "poll_interval = \"1s\"",
        &format!(
            "poll_interval = \"1s\"\nimport_command = \"{}\"\nimport_timeout = \"10s\"",
            script.display()
        ),
    );
    assert_ne!(edited, text);
    fs::write(&config, &edited).unwrap();
    relay.signal("HUP");
    wait_for("the import command in effect", || {
        relay.logged(&[
            "configuration changed; in effect now",
            "legacy.import_command",
        ])
    });
    let reply = relay.send(
        "alice@example.org",
        "john.smith@legacy.example.com",
        "Subject: imported\n\nthrough the new import command",
    );
    assert!(reply.starts_with("250"), "{reply}");
    let ran = wait_for("the import command run on the new file", || {
        fs::read_to_string(&marker)
            .ok()
            .filter(|t| !t.trim().is_empty())
    });
    let name = ran.lines().next().unwrap().trim().to_owned();
    let imported = relay.data().join("legacy/imported").join(&name);
    assert!(
        fs::read_to_string(&imported).is_ok_and(|t| t.contains("through the new import command")),
        "{}",
        imported.display()
    );
}

// See: issue 6 ("a poisoned import does not stall the others"; KB Q232687, Q223772).
#[test]
fn a_poisoned_import_does_not_stall_the_others() {
    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("import.sh");
    fs::write(
        &script,
        "#!/bin/sh\nif grep -q POISON \"$1\"; then exit 5; fi\nexit 0\n",
    )
    .unwrap();
    let _ = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status();
    let relay = Relay::start(&format!(
        "import_command = \"{}\"\nimport_timeout = \"10s\"",
        script.display()
    ));
    for subject in ["first", "POISON", "third"] {
        let reply = relay.send(
            "alice@example.org",
            "john.smith@legacy.example.com",
            &format!("Subject: {subject}\n\nbody {subject}"),
        );
        assert!(reply.starts_with("250"), "{reply}");
    }
    let imported = relay.data().join("legacy/imported");
    wait_for("two imported files", || {
        (files(&imported).len() == 2).then_some(())
    });
    let failed = relay.data().join("legacy/failed");
    let failed_files = wait_for("the poisoned file set aside", || {
        Some(files(&failed)).filter(|f| f.len() == 1)
    });
    assert!(
        fs::read_to_string(&failed_files[0])
            .unwrap()
            .contains("POISON")
    );
    assert!(
        relay.imports().is_empty(),
        "the drop folder is left empty: nothing is re-imported forever"
    );
    // Exit 5 is undeliverable: the sender gets a delivery status notification.
    let dsn = wait_for("a bounce to the sender", || {
        relay
            .maildir()
            .into_iter()
            .find(|m| m.contains("multipart/report"))
    });
    assert_eq!(header(&dsn, "Delivered-To"), ["alice@example.org"]);
}

// See: issue 6 ("a replay twice delivers once").
#[test]
fn the_same_export_picked_up_twice_is_delivered_once() {
    let relay = Relay::start("");
    let export = "Message:\nFrom: Smith, John at HQ\nDate: 11/23/26 9:00\nTo: Doe, Jane at HQ\nSubject: once\nContents:\nText item:\nonly once\n";
    relay.export("ONCE.TXT", export);
    wait_for("the first copy", || {
        relay
            .maildir()
            .into_iter()
            .find(|m| m.contains("only once"))
    });
    wait_for("the file archived", || {
        (!relay.data().join("legacy/outbound/ONCE.TXT").exists()).then_some(())
    });
    relay.export("ONCE.TXT", export);
    wait_for("the second file archived", || {
        (files(&relay.data().join("legacy/archive")).len() == 2).then_some(())
    });
    // A file is archived only after its messages are queued, so a second copy, had it been
    // queued, is in the queue now or already delivered: wait for the queue to drain.
    wait_for("an empty queue", || {
        relay.queue_list().trim().is_empty().then_some(())
    });
    let copies = relay
        .maildir()
        .into_iter()
        .filter(|m| m.contains("only once"))
        .count();
    assert_eq!(copies, 1);
}

/// One HTTP GET on the admin listener: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

// See: issue 7 ("/metrics is scraped by Prometheus's own text parser").
#[test]
fn metrics_parse_with_the_prometheus_client_library() {
    let Some(python) =
        crate::util::require_python("metrics_parse_with_the_prometheus_client_library")
    else {
        return;
    };
    let has_client = std::process::Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_client {
        crate::util::skip(
            "metrics_parse_with_the_prometheus_client_library: python prometheus_client not installed",
        );
        return;
    }
    let relay = Relay::start("unknown_recipients = \"hold\"");
    assert!(
        relay
            .send(
                "alice@example.org",
                "jane.doe@legacy.example.com",
                "Subject: m\n\nx"
            )
            .starts_with("250")
    );
    wait_for("a delivery", || relay.maildir().into_iter().next());
    // A legacy message for a name nobody has: held in the unroutable lane.
    relay.export(
        "GHOST.TXT",
        "Message:\nFrom: Smith, John at HQ\nTo: Ghost at SMTPGW\nSubject: ghost\nContents:\nText item:\nboo\n",
    );
    wait_for("the held ghost", || {
        let (_, body) = http_get(&relay.admin, "/metrics");
        body.contains("ccgate_queue_messages{state=\"held\"} 1")
            .then_some(())
    });
    assert_eq!(http_get(&relay.admin, "/healthz").0, "HTTP/1.1 200 OK");
    assert_eq!(http_get(&relay.admin, "/readyz").0, "HTTP/1.1 200 OK");
    let (status, body) = http_get(&relay.admin, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let scrape = relay.dir.path().join("scrape.txt");
    fs::write(&scrape, &body).unwrap();
    let parse = std::process::Command::new(&python)
        .arg("-c")
        .arg("import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nfor f in p(open(sys.argv[1]).read()):\n  for s in f.samples: print(s.name, sorted(s.labels.items()), float(s.value))")
        .arg(&scrape)
        .output()
        .unwrap();
    let parsed = String::from_utf8_lossy(&parse.stdout);
    assert!(
        parse.status.success(),
        "{}",
        String::from_utf8_lossy(&parse.stderr)
    );
    for want in [
        "ccgate_messages_accepted_total [('source', 'smtp')] 1.0",
        "ccgate_recipients_delivered_total [('destination', 'modern')] 1.0",
        "ccgate_delivery_duration_seconds_count [('destination', 'modern')] 1.0",
        "ccgate_directory_entries [] 3.0",
        "ccgate_queue_messages [('state', 'held')] 1.0",
        "ccgate_queue_messages [('state', 'active')] 0.0",
        "ccgate_queue_recipients_by_state [('destination', 'unroutable'), ('state', 'held')] 1.0",
        "ccgate_queue_recipients_by_state [('destination', 'modern'), ('state', 'active')] 0.0",
    ] {
        assert!(parsed.contains(want), "{want} not in\n{parsed}");
    }
}

// See: issue 6 ("nothing lost"): with `unknown_recipients = "hold"`, a legacy recipient
// nobody has is kept, held, not dropped.
#[test]
fn a_legacy_recipient_nobody_has_is_held_not_dropped() {
    let relay = Relay::start("unknown_recipients = \"hold\"");
    relay.ghost_for_jane();
    let listed = relay.queue_list();
    assert!(
        listed.contains("unroutable") && listed.contains("held"),
        "{listed}"
    );
}

// By default a legacy recipient nobody has is bounced as a post office would: the legacy
// sender gets a non-delivery report (the original headers returned) as an import file, the other
// recipients their copies, and the queue keeps nothing.
#[test]
fn a_legacy_recipient_nobody_has_gets_the_sender_a_non_delivery_report() {
    let relay = Relay::start("");
    relay.ghost_for_jane();
    let report = wait_for("the report to John as an import file", || {
        relay
            .imports()
            .into_iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .find(|text| text.contains("5.1.1"))
    });
    assert!(
        header(&report, "To")
            .iter()
            .any(|to| to.contains("Smith, John at HQ")),
        "{report}"
    );
    assert!(report.contains("Ghost"), "{report}");
    assert!(
        report.contains("Subject: ghost") && report.contains("Status: 5.1.1"),
        "the report names the failure and returns the original headers\n{report}"
    );
    wait_for("an empty queue", || {
        relay.queue_list().trim().is_empty().then_some(())
    });
}

// See: docs/cli.md ("SIGHUP: read the config file again and reload the directory"). The `[directory]` settings
// (and `queue.retry`) apply at once; other changed keys are named and wait for a restart; a broken file is
// refused whole and the gateway keeps running as it was.
#[test]
fn sighup_rereads_the_config_file() {
    let relay = Relay::start("");
    let newcomer = "new.user@legacy.example.com";
    let reply = relay.send("alice@example.org", newcomer, "Subject: hi\n\nfirst");
    assert!(reply.contains("550"), "not in the directory yet: {reply}");
    fs::write(
        relay.data().join("directory2.csv"),
        format!(
            "{SAMPLE_DIRECTORY}New User,\"User, New\",HQ,\"SMTP:{newcomer};CCMAIL:User, New at HQ\",SMTP:new.user@modern.example.com,migrated\n"
        ),
    )
    .unwrap();
    let config = relay.dir.path().join("ccgate.toml");
    let text = fs::read_to_string(&config).unwrap();
    let edited = text
        .replace("data/directory.csv", "data/directory2.csv")
        .replace("retry = [\"1s\"]", "retry = [\"2s\"]")
        .replace("poll_interval = \"1s\"", "poll_interval = \"2s\"");
    assert_ne!(edited, text);
    fs::write(&config, &edited).unwrap();
    relay.signal("HUP");
    wait_for("the new directory source in effect", || {
        relay.logged(&["configuration changed; in effect now", "directory.source"])
    });
    wait_for("the new retry schedule in effect", || {
        relay.logged(&["configuration changed; in effect now", "queue.retry"])
    });
    wait_for("the restart warning for legacy.poll_interval", || {
        relay.logged(&["takes effect at the next restart", "legacy.poll_interval"])
    });
    let reply = wait_for("the newcomer accepted", || {
        let reply = relay.send("alice@example.org", newcomer, "Subject: hi\n\nsecond");
        reply.starts_with("250").then_some(reply)
    });
    assert!(reply.starts_with("250"));
    wait_for("the newcomer's message in the Maildir", || {
        relay.maildir().into_iter().find(|m| m.contains("second"))
    });

    // A broken file: refused with its line, and the gateway goes on as it was.
    fs::write(&config, format!("{edited}\nbogus = 1\n")).unwrap();
    relay.signal("HUP");
    let refused = wait_for("the refusal", || {
        relay.logged(&["configuration reload refused"])
    });
    assert!(refused.contains("bogus"), "{refused}");
    let reply = relay.send("alice@example.org", newcomer, "Subject: hi\n\nthird");
    assert!(reply.starts_with("250"), "{reply}");

    // A directory that comes back empty is not taken: every legacy user would be unknown.
    fs::write(&config, &edited).unwrap();
    fs::write(
        relay.data().join("directory2.csv"),
        "display_name,legacy_name,post_office,proxy_addresses,target_address,state\n",
    )
    .unwrap();
    relay.signal("HUP");
    wait_for("the empty directory refused", || {
        relay.logged(&["directory reload refused: the new directory has no entries"])
    });
    let reply = relay.send("alice@example.org", newcomer, "Subject: hi\n\nfourth");
    assert!(reply.starts_with("250"), "{reply}");
}

/// aiosmtpd (`python3 -m aiosmtpd`) storing what it receives in a Maildir; killed on drop.
struct NextHop {
    child: std::process::Child,
    port: u16,
    maildir: PathBuf,
}

/// An aiosmtpd handler that keeps each message's DATA exactly as it came off the wire
/// (`original_content`: dot-unstuffed, line ends as sent) in `<folder>/new/`.
const RAW_HANDLER: &str = "\
import os, time

class Raw:
    def __init__(self, folder):
        self.folder = os.path.join(folder, 'new')
        os.makedirs(self.folder, exist_ok=True)

    @classmethod
    def from_cli(cls, parser, *args):
        return cls(args[0])

    async def handle_DATA(self, server, session, envelope):
        name = os.path.join(self.folder, '%d.eml' % time.time_ns())
        with open(name + '.tmp', 'wb') as f:
            f.write(envelope.original_content)
        os.rename(name + '.tmp', name)
        return '250 OK'
";

impl NextHop {
    /// aiosmtpd with its Maildir handler (which parses each message and writes it again).
    fn start(dir: &Path) -> Option<Self> {
        Self::spawn(dir, "aiosmtpd.handlers.Mailbox")
    }

    /// aiosmtpd keeping the raw bytes of each message ([`RAW_HANDLER`]).
    fn start_raw(dir: &Path) -> Option<Self> {
        fs::write(dir.join("rawhop.py"), RAW_HANDLER).unwrap();
        Self::spawn(dir, "rawhop.Raw")
    }

    fn spawn(dir: &Path, handler: &str) -> Option<Self> {
        let python = crate::util::require_python("aiosmtpd next hop")?;
        let has = std::process::Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        if !has {
            crate::util::skip("python aiosmtpd not installed (pip install aiosmtpd)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = dir.join("next-hop");
        let child = std::process::Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-c", handler])
            .args(["-l", &format!("127.0.0.1:{port}")])
            .arg(&maildir)
            .env("PYTHONPATH", dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let hop = Self {
            child,
            port,
            maildir,
        };
        wait_for("aiosmtpd to listen", || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Some(hop)
    }

    fn received(&self) -> Vec<String> {
        files(&self.maildir.join("new"))
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for NextHop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// See: issue 6 and the brief ("a real downstream SMTP server"): with `next_hop = "smtp://..."`
// mail for migrated users from both sides, and mail for the outside world, reaches a real
// SMTP server; the [modern] connection keys are in use.
#[test]
fn mail_reaches_a_real_smtp_next_hop_from_both_sides() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(hop) = NextHop::start(scratch.path()) else {
        return;
    };
    let relay = Relay::start_with(
        "",
        &format!(
            "[modern]\nnext_hop = \"smtp://127.0.0.1:{}\"\nconcurrency = 2\n\
             connect_timeout = \"5s\"\ncommand_timeout = \"20s\"\ndata_timeout = \"20s\"\n",
            hop.port
        ),
    );
    let reply = relay.send(
        "alice@example.org",
        "jane.doe@legacy.example.com",
        "Subject: by smtp\n\nfrom the internet",
    );
    assert!(reply.starts_with("250"), "{reply}");
    relay.export(
        "TOJANE.TXT",
        "Message:\nFrom: Smith, John at HQ\nTo: Doe, Jane at HQ\nTo: friend@outside.test at SMTPGW\nSubject: old name\nContents:\nText item:\nfrom the legacy side\n",
    );
    let from_smtp = wait_for("the SMTP message at the next hop", || {
        hop.received()
            .into_iter()
            .find(|m| m.contains("from the internet"))
    });
    assert!(
        from_smtp.contains("X-RcptTo: jane.doe@modern.example.com"),
        "{from_smtp}"
    );
    wait_for("both legacy copies at the next hop", || {
        let got: Vec<String> = hop
            .received()
            .into_iter()
            .filter(|m| m.contains("from the legacy side"))
            .collect();
        let rcpts = got.join("\n");
        (rcpts.contains("jane.doe@modern.example.com") && rcpts.contains("friend@outside.test"))
            .then_some(())
    });
    wait_for("an empty queue", || {
        relay.queue_list().trim().is_empty().then_some(())
    });
    // The SMTP agent reports its deliveries as the other agents do: one log line per
    // recipient, naming the next hop, and a `delivered` event in the message trace.
    let hop_addr = format!("127.0.0.1:{}", hop.port);
    let line = wait_for("the delivery line of friend@outside.test", || {
        relay.logged(&[
            "delivered",
            "to=friend@outside.test",
            &format!("relay={hop_addr}"),
        ])
    });
    assert!(
        line.contains("queue_id=") && line.contains("status=\"sent\""),
        "{line}"
    );
    wait_for("the delivery in the message trace", || {
        let trace = ccgate()
            .arg("--config")
            .arg(relay.dir.path().join("ccgate.toml"))
            .args(["trace", "--json", "friend@outside.test"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&trace.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .any(|e| {
                e["event"] == "delivered"
                    && e["to"][0] == "friend@outside.test"
                    && e["side"] == "modern"
                    && e["detail"] == hop_addr.as_str()
            })
            .then_some(())
    });
}

// See: the contract ("what a default Postfix accepts, ccgate accepts ... what Postfix refuses as
// unsafe (smuggling), ccgate refuses"). Postfix takes a bare CR as text; so does ccgate, and it
// never sends one on bare: in the body it becomes CR LF and the dot after it is stuffed, so a
// next hop that ends lines at a bare CR still reads one message whose text holds the would-be
// commands; in the header section it becomes a space, so no header is split in two.
#[test]
fn a_bare_cr_is_taken_as_text_and_never_reaches_the_next_hop_bare() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(hop) = NextHop::start_raw(scratch.path()) else {
        return;
    };
    let relay = Relay::to_next_hop(&hop);
    let reply = relay.send(
        "alice@example.org",
        "jane.doe@legacy.example.com",
        "Subject: bare cr\rX-Two: one header\n\nhello\r.\rMAIL FROM:<admin@example.org>\nafter",
    );
    assert!(reply.starts_with("250"), "{reply}");
    // The bytes as they came off the wire (dot-unstuffed by the next hop). In the header
    // section the bare CR is a space: one header for the next hop, as for this gateway.
    let got = wait_for("the message at the next hop", || {
        hop.received()
            .into_iter()
            .find(|m| m.contains("Subject: bare cr"))
    });
    assert!(
        !got.replace("\r\n", "").contains('\r'),
        "a bare CR reached the next hop: {got:?}"
    );
    assert!(
        got.contains(
            "\r\nSubject: bare cr X-Two: one header\r\n\r\nhello\r\n.\r\nMAIL FROM:<admin@example.org>\r\nafter\r\n"
        ),
        "{got:?}"
    );
    wait_for("an empty queue", || {
        relay.queue_list().trim().is_empty().then_some(())
    });
    assert_eq!(hop.received().len(), 1, "one message, nothing smuggled");
}

/// What a MIME reader decodes from the first text part of `message`.
fn decoded_text(message: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default()
        .parse(message)
        .expect("a message");
    parsed.body_text(0).expect("a text part").into_owned()
}

// See: issue 12 ("Accept what Postfix accepts"): 2,000- and 50,000-octet lines from an SMTP
// client reach aiosmtpd (which refuses lines over 1,000 octets) re-encoded, with the same
// decoded text, and the legacy post office as text items no line of which is cut off.
#[test]
fn long_lines_reach_a_strict_next_hop_re_encoded_and_the_legacy_side_whole() {
    let scratch = tempfile::tempdir().unwrap();
    let Some(hop) = NextHop::start(scratch.path()) else {
        return;
    };
    let relay = Relay::to_next_hop(&hop);
    for n in [2_000usize, 50_000] {
        let line: String = format!("long{n} ")
            .chars()
            .chain("caf\u{e9} = x\t".chars().cycle())
            .take(n)
            .collect();
        let message = format!(
            "Subject: long {n}\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nbefore\n{line}\nafter"
        );
        let reply = relay.send("alice@example.org", "jane.doe@legacy.example.com", &message);
        assert!(reply.starts_with("250"), "{n}: {reply}");
        let got = wait_for("the long message at the next hop", || {
            files(&hop.maildir.join("new"))
                .iter()
                .map(|p| fs::read(p).unwrap())
                .find(|m| String::from_utf8_lossy(m).contains(&format!("Subject: long {n}")))
        });
        let longest = got.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap();
        assert!(
            longest <= 1000,
            "{n}: a {longest}-octet line reached the next hop"
        );
        let text = decoded_text(&got);
        assert_eq!(
            text.replace("\r\n", "\n"),
            format!("before\n{line}\nafter\n"),
            "{n}: the decoded text changed"
        );
        // To a legacy user: the import file holds the line, split into text items.
        let reply = relay.send(
            "alice@example.org",
            "john.smith@legacy.example.com",
            &message,
        );
        assert!(reply.starts_with("250"), "{n}: {reply}");
    }
    let imports = wait_for("two import files", || {
        let found = relay.imports();
        (found.len() >= 2).then_some(found)
    });
    let check = ccgate().arg("check").args(&imports).output().unwrap();
    assert!(
        check.status.success(),
        "the import files are valid: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Read back as the post office would: the text items, joined, are the text sent (the
    // writer splits text items over 20 KB at line ends, hard at 20,480 bytes for one line).
    let mut texts = Vec::new();
    for path in &imports {
        let bytes = fs::read(path).unwrap();
        for raw in ccgate_ccmail::SliceReader::new(&bytes) {
            let (message, _) = raw.unwrap().decode(&ccgate_ccmail::ReadOptions::default());
            let text: String = message
                .items
                .iter()
                .filter_map(|item| match &item.body {
                    ccgate_ccmail::ItemBody::Text(t) => Some(t.as_str()),
                    ccgate_ccmail::ItemBody::Bytes(_) => None,
                })
                .collect();
            texts.push((message.items.len(), text));
        }
    }
    for n in [2_000usize, 50_000] {
        let line: String = format!("long{n} ")
            .chars()
            .chain("caf\u{e9} = x\t".chars().cycle())
            .take(n)
            .collect();
        let want = format!("before\r\n{line}\r\nafter");
        let found = texts
            .iter()
            .find(|(_, t)| t.trim_end() == want)
            .unwrap_or_else(|| panic!("{n}: no import message holds the text whole"));
        if n == 50_000 {
            assert!(found.0 >= 3, "split into {} text items", found.0);
        }
    }
}

/// The tag of a reply address for `legacy` made `days_ago` days ago with the key in the data
/// folder, computed by Python's hmac from the documented format (an independent check).
fn python_tag(python: &Path, data: &Path, legacy: &str, days_ago: u32) -> String {
    let script = r#"
import base64, hashlib, hmac, sys, time
keys, legacy, days_ago = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = next(l.split()[2] for l in open(keys) if l.startswith("current "))
stamp = (int(time.time()) // 86400 - days_ago) % 1024
mac = hmac.new(bytes.fromhex(key), f"{stamp}:{legacy.lower()}".encode(), hashlib.sha256).digest()[:5]
alphabet = "abcdefghijklmnopqrstuvwxyz234567"
print(alphabet[stamp >> 5] + alphabet[stamp & 31] + base64.b32encode(mac).decode().lower())
"#;
    let out = crate::util::python(
        python,
        data,
        "tag.py",
        script,
        &[
            data.join("reply-tag.keys").to_str().unwrap(),
            legacy,
            &days_ago.to_string(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

// A sender outside the directory at a post office the config does not list: the mail goes out,
// and the log says once that replies to that post office will be refused.
#[test]
fn a_sender_at_an_unlisted_post_office_is_warned_about_once() {
    let relay = Relay::start("");
    for n in 1..=2 {
        relay.export(
            &format!("FAR{n}.TXT"),
            &format!("Message:\nFrom: Far, Fay at FARPO\nTo: alice@example.org at SMTPGW\nSubject: far {n}\nContents:\nText item:\nfrom afar {n}\n"),
        );
        wait_for("the message in the Maildir", || {
            relay
                .maildir()
                .into_iter()
                .find(|m| m.contains(&format!("from afar {n}")))
        });
    }
    let warned = relay
        .logged(&["not in [legacy] post_offices", "FARPO"])
        .expect("a warning naming the post office");
    assert!(
        warned.contains("replies to them will be refused"),
        "{warned}"
    );
    let count = relay
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("not in [legacy] post_offices"))
        .count();
    assert_eq!(count, 1, "warned once per post office");
}

// See: issue 13. A legacy name too long for the IMCEA form (64 octets) is issued as
// `"Name%PO%tag"`; the SMTP listener must take replies to it although it refuses the percent
// hack in quotes for every address the gateway did not issue.
#[test]
fn a_long_legacy_name_gets_replies_at_its_quoted_address() {
    let relay = Relay::start("post_offices = [\"HQ\", \"BRANCH\"]");
    relay.export("LONG.TXT", "Message:\nFrom: Montgomery-Smith, Alexandra Josephine at BRANCH\nTo: alice@example.org at SMTPGW\nSubject: long name\nContents:\nText item:\nHello Alice, from a long name.\n");
    let (to_alice, issued) = relay.delivered_with_sender("from a long name");
    assert!(
        issued.starts_with("\"Montgomery-Smith, Alexandra Josephine%BRANCH%")
            && issued.ends_with("\"@legacy.example.com"),
        "{to_alice}"
    );
    let import = relay.reply_imported(
        &issued,
        "Subject: RE: long name\n\nHello Alexandra, reply received.",
        "Hello Alexandra",
    );
    assert_eq!(
        header(&import, "To"),
        ["Montgomery-Smith, Alexandra Josephine at BRANCH"]
    );
    // The same form with a made-up tag, and the percent hack in quotes towards a host: refused
    // as a relay trick, as before.
    let (name, _) = issued.rsplit_once('%').unwrap();
    for to in [
        format!("{name}%abcdefghij\"@legacy.example.com"),
        "\"victim%relay.example\"@legacy.example.com".to_owned(),
        "\"victim%relay.example\"@modern.example.com".to_owned(),
    ] {
        let reply = relay.send("mallory@example.net", &to, "Subject: x\n\nx");
        assert!(
            reply.starts_with("RCPT TO:") && reply.contains("553 5.7.1"),
            "{to}: {reply}"
        );
    }
}

// See: issue 13 (only reply addresses the gateway issued cross; docs/directory.md, the reply-tag rule).
#[test]
fn a_legacy_sender_outside_the_directory_gets_replies_and_strangers_get_550() {
    let Some(python) = crate::util::require_python("reply tags") else {
        return;
    };
    let relay = Relay::start("post_offices = [\"HQ\", \"BRANCH\"]\nreply_tag_lifetime = \"30d\"");
    let keys = relay.data().join("reply-tag.keys");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&keys).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is private");

    // A legacy sender nobody put in the directory writes to the Internet.
    relay.export("STRANGER.TXT", "Message:\nFrom: Stranger, Sam at BRANCH\nTo: alice@example.org at SMTPGW\nSubject: hello\nContents:\nText item:\nHello Alice, from a stranger.\n");
    // The envelope sender, and the From: address (folded after the display name).
    let (to_alice, issued) = relay.delivered_with_sender("from a stranger");
    assert!(
        issued.starts_with("IMCEACCMAIL-Stranger+2C+20Sam+20at+20BRANCH.")
            && issued.ends_with("@legacy.example.com"),
        "{to_alice}"
    );
    assert!(
        to_alice
            .replace("\r\n", "\n")
            .contains(&format!("From: \"Stranger, Sam\"\n <{issued}>")),
        "From: carries the same tagged address\n{to_alice}"
    );

    // Alice replies to the address she was given: accepted, and it lands in Sam's mailbox.
    let import = relay.reply_imported(
        &issued,
        "Subject: RE: hello\n\nHello Sam, reply received.",
        "reply received",
    );
    assert_eq!(header(&import, "To"), ["Stranger, Sam at BRANCH"]);

    // A tag made 29 days ago still works (Python makes it from the documented format).
    let (untagged, _) = issued.split_once('@').unwrap();
    let (untagged, _) = untagged.rsplit_once('.').unwrap();
    let legacy = "Stranger, Sam at BRANCH";
    let aged = format!(
        "{untagged}.{}@legacy.example.com",
        python_tag(&python, &relay.data(), legacy, 29)
    );
    let reply = relay.send("alice@example.org", &aged, "Subject: late\n\nA late reply.");
    assert!(reply.starts_with("250"), "{aged}: {reply}");

    // Expired, missing, forged, another name's tag, a post office not listed, a board: 550.
    let expired = format!(
        "{untagged}.{}@legacy.example.com",
        python_tag(&python, &relay.data(), legacy, 31)
    );
    let issued_tag = issued
        .split_once('@')
        .and_then(|(l, _)| l.rsplit_once('.'))
        .unwrap()
        .1
        .to_owned();
    let refused = [
        expired.clone(),
        format!("{untagged}@legacy.example.com"),
        format!("{untagged}.abcdefghij@legacy.example.com"),
        format!("IMCEACCMAIL-Other+2C+20Sam+20at+20BRANCH.{issued_tag}@legacy.example.com"),
        "IMCEACCMAIL-Anyone+20at+20OTHERPO@legacy.example.com".to_owned(),
        format!(
            "IMCEACCMAIL-Anyone+20at+20OTHERPO.{}@legacy.example.com",
            python_tag(&python, &relay.data(), "Anyone at OTHERPO", 0)
        ),
        "IMCEACCMAIL-+23Social+20at+20HQ@legacy.example.com".to_owned(),
    ];
    for to in &refused {
        let reply = relay.send("mallory@example.net", to, "Subject: x\n\nx");
        assert!(
            reply.starts_with("RCPT TO:") && reply.contains("550 5.1.1"),
            "{to}: {reply}"
        );
    }

    // `ccgate route` explains the tag.
    let route = |address: &str| {
        let out = ccgate()
            .arg("--config")
            .arg(relay.dir.path().join("ccgate.toml"))
            .args(["route", address])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let explained = [
        (
            issued.as_str(),
            "reply tag valid (issued today, valid 30 more day(s))",
        ),
        (expired.as_str(), "reply tag expired (issued 31 days ago"),
        (refused[1].as_str(), "no reply tag"),
        (refused[2].as_str(), "forged reply tag"),
        (
            refused[4].as_str(),
            "post office OTHERPO is not in [legacy] post_offices",
        ),
    ];
    for (address, expected) in explained {
        let text = route(address);
        assert!(text.contains(expected), "{address}: {text}");
    }
    let json = ccgate()
        .arg("--config")
        .arg(relay.dir.path().join("ccgate.toml"))
        .args([
            "route",
            "--json",
            &issued,
            &expired,
            &refused[1],
            &refused[2],
        ])
        .output()
        .unwrap();
    let states: Vec<String> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["reply_tag"].as_str().unwrap_or("null").to_owned()
        })
        .collect();
    assert_eq!(states, ["valid", "expired", "missing", "forged"]);
}

// See: issue 13 ("no backscatter, no loops"). The legacy post office refuses (import exit 5)
// every message: the ordinary sender gets one bounce; MAILER-DAEMON, postmaster, the null
// sender and auto-submitted mail get none, and the log says why, with the queue id.
#[test]
fn bounces_are_not_sent_to_robots_or_for_auto_submitted_mail() {
    let script_dir = tempfile::tempdir().unwrap();
    let script = script_dir.path().join("import.sh");
    fs::write(&script, "#!/bin/sh\nexit 5\n").unwrap();
    let _ = std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status();
    let relay = Relay::start(&format!(
        "import_command = \"{}\"\nimport_timeout = \"10s\"",
        script.display()
    ));
    for (from, subject, extra) in [
        ("MAILER-DAEMON@far.test", "robot", ""),
        ("postmaster@far.test", "pm", ""),
        ("", "null", ""),
        ("list@far.test", "auto", "Auto-Submitted: auto-generated\n"),
        ("alice@example.org", "ordinary", ""),
    ] {
        let reply = relay.send(
            from,
            "john.smith@legacy.example.com",
            &format!("From: <{from}>\n{extra}Subject: {subject}\n\nbody {subject}"),
        );
        assert!(reply.starts_with("250"), "{from}: {reply}");
    }
    let dsn = wait_for("the ordinary sender's bounce", || {
        relay
            .maildir()
            .into_iter()
            .find(|m| m.contains("multipart/report"))
    });
    assert_eq!(header(&dsn, "Delivered-To"), ["alice@example.org"]);
    for reason in [
        "the sender is MAILER-DAEMON, a mail system's address",
        "the sender is postmaster, a mail system's address",
        "the message is Auto-Submitted: auto-generated",
    ] {
        let line = wait_for(reason, || {
            relay.logged(&["not delivered", "bounce suppressed", reason])
        });
        assert!(line.contains("queue_id="), "{line}");
    }
    let line = wait_for("the null sender's line", || {
        relay.logged(&["bounce suppressed", "the sender is the null sender <>"])
    });
    assert!(line.contains("queue_id="), "{line}");
    wait_for("an empty queue", || {
        relay.queue_list().trim().is_empty().then_some(())
    });
    let bounces: Vec<String> = relay
        .maildir()
        .into_iter()
        .filter(|m| m.contains("multipart/report"))
        .collect();
    assert_eq!(bounces.len(), 1, "one bounce, to alice only");
}

// See: issue 13 ("legacy non-delivery reports of such mail are not relayed back out").
#[test]
fn a_legacy_non_delivery_report_to_a_robot_is_not_relayed_back_out() {
    let relay = Relay::start("");
    relay.export("NDR.TXT", "Message:\nFrom: Postmaster at HQ\nTo: MAILER-DAEMON@far.test at SMTPGW\nTo: alice@example.org at SMTPGW\nSubject: Message not deliverable\nContents:\nText item:\nNot deliverable to Ghost at HQ.\n");
    let to_alice = wait_for("the report for alice", || {
        relay
            .maildir()
            .into_iter()
            .find(|m| m.contains("Not deliverable to Ghost"))
    });
    assert_eq!(header(&to_alice, "Delivered-To"), ["alice@example.org"]);
    assert_eq!(
        header(&to_alice, "Return-Path"),
        ["<>"],
        "a report leaves with the null sender"
    );
    let line = wait_for("the log line", || {
        relay.logged(&[
            "not delivered",
            "MAILER-DAEMON@far.test",
            "bounce suppressed",
        ])
    });
    assert!(line.contains("queue_id="), "{line}");
    wait_for("an empty queue", || {
        relay.queue_list().trim().is_empty().then_some(())
    });
    let copies = relay
        .maildir()
        .into_iter()
        .filter(|m| m.contains("Not deliverable to Ghost"))
        .count();
    assert_eq!(
        copies, 1,
        "nothing for MAILER-DAEMON@far.test, and no bounce of it"
    );
}

// See: issue 13 (the key is rotated with an overlap). A key two days older than the lifetime is
// replaced when `ccgate run` starts (never by `replay` or `route`, so two processes sharing the
// file cannot both rotate it); tags made with it stay valid (previous key), tags from an
// unknown key do not.
#[test]
fn the_reply_tag_key_rotates_and_tags_of_the_previous_key_stay_valid() {
    let Some(python) = crate::util::require_python("reply tag rotation") else {
        return;
    };
    let (dir, config) = crate::route::setup(
        None,
        "[smtp]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let data = dir.path().join("data");
    fs::create_dir_all(&data).unwrap();
    let keys = data.join("reply-tag.keys");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old_hex = "11".repeat(32);
    let made = now - 33 * 86_400;
    fs::write(&keys, format!("current {made} {old_hex}\n")).unwrap();
    let legacy = "Nobody, Known at HQ";
    let address =
        |tag: &str| format!("IMCEACCMAIL-Nobody+2C+20Known+20at+20HQ.{tag}@legacy.example.com");
    let old_tag = python_tag(&python, &data, legacy, 0);

    // `ccgate replay` uses the keys as they are (an empty mbox: nothing to queue).
    let empty = dir.path().join("empty.mbox");
    fs::write(&empty, "").unwrap();
    let out = crate::route::run_with(&config, &["replay", empty.to_str().unwrap()]);
    assert!(out.status.code().is_some(), "{out:?}");
    assert_eq!(
        fs::read_to_string(&keys).unwrap(),
        format!("current {made} {old_hex}\n"),
        "replay never rotates"
    );
    // `ccgate run` rotates at start.
    let mut gateway = ccgate()
        .arg("--config")
        .arg(&config)
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rotated = wait_for("the key rotated by ccgate run", || {
        let text = fs::read_to_string(&keys).unwrap_or_default();
        text.contains("previous ").then_some(text)
    });
    let _ = gateway.kill();
    let _ = gateway.wait();
    let text = rotated;
    assert!(
        text.contains(&format!("previous {made} {old_hex}")),
        "{text}"
    );
    let current = text
        .lines()
        .find_map(|l| l.strip_prefix("current "))
        .unwrap()
        .to_owned();
    assert!(!current.ends_with(&old_hex), "{text}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&keys).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let route = |address: &str| {
        let out = crate::route::run_with(&config, &["route", address]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let explained = route(&address(&old_tag));
    assert!(
        explained.contains("legacy \"Nobody, Known at HQ\"")
            && explained.contains("made with the previous key"),
        "{explained}"
    );
    let new_tag = python_tag(&python, &data, legacy, 0);
    assert_ne!(new_tag, old_tag);
    assert!(route(&address(&new_tag)).contains("reply tag valid (issued today"));
    // A key nobody has.
    fs::write(
        data.join("other.keys"),
        format!("current {now} {}\n", "22".repeat(32)),
    )
    .unwrap();
    let script_keys = data.join("reply-tag.keys");
    fs::rename(&script_keys, data.join("kept.keys")).unwrap();
    fs::rename(data.join("other.keys"), &script_keys).unwrap();
    let stranger_tag = python_tag(&python, &data, legacy, 0);
    fs::rename(data.join("kept.keys"), &script_keys).unwrap();
    assert!(route(&address(&stranger_tag)).contains("forged reply tag"));
}
