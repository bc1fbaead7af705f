//! The SMTP delivery agent against a real downstream server: aiosmtpd (Python), skipped with a
//! `SKIPPED:` line when it is not installed (a failure under CI, which sets
//! `CCGATE_REQUIRE_PEERS`), and Postfix's smtp-sink for the pipelined path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ccgate_core::{EmailAddress, Envelope, Lane, QueueId, ReversePath};
use ccgate_queue::{RcptState, Route, Spool, SpoolOptions};
use ccgate_server::{Metrics, Shutdown, SmtpAgent, SmtpClientOptions, TlsPolicy};

const MX: &str = r#"
import os, signal, sys
from aiosmtpd.controller import Controller
out = sys.argv[3]
class Sink:
    n = 0
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("defer"):
            return "450 4.2.1 mailbox busy, try later"
        if address.startswith("reject"):
            return "550 5.1.1 <%s>: no such user" % address
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"
    async def handle_DATA(self, server, session, envelope):
        Sink.n += 1
        with open(os.path.join(out, "%d.eml" % Sink.n), "wb") as f:
            f.write(envelope.original_content)
        print(session.peer[1], envelope.mail_from, ",".join(envelope.rcpt_tos),
              "tls" if session.ssl else "plain", flush=True)
        return "250 2.0.0 OK queued"
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
tls = {}
if len(sys.argv) > 5:  # cert and key: offer STARTTLS (not required)
    import ssl
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    tls = dict(tls_context=ctx, require_starttls=False)
ctl = Controller(Sink(), hostname=sys.argv[1], port=int(sys.argv[2]), **tls); ctl.start()
signal.sigwait({signal.SIGTERM, signal.SIGINT}); ctl.stop()
"#;

/// A peer is missing: `SKIPPED: <why>` on a developer machine, a failure under CI, which sets
/// `CCGATE_REQUIRE_PEERS` after installing every peer.
fn skip(why: &str) {
    assert!(
        std::env::var_os("CCGATE_REQUIRE_PEERS").is_none(),
        "{why}, and CCGATE_REQUIRE_PEERS is set: every peer must be installed (see .ci/run)"
    );
    println!("SKIPPED: {why}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A downstream server process, killed on drop.
struct Downstream {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Downstream {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Downstream {
    fn aiosmtpd() -> Option<Self> {
        Self::aiosmtpd_with(&[])
    }

    /// aiosmtpd with extra arguments for the script (a certificate and key: STARTTLS).
    fn aiosmtpd_with(tls: &[&Path]) -> Option<Self> {
        let ok = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            skip("aiosmtpd is not installed (pip install aiosmtpd)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("mx.py");
        std::fs::write(&script, MX).unwrap();
        let msgs = dir.path().join("msgs");
        std::fs::create_dir(&msgs).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("received.log")).unwrap();
        let child = Command::new("python3")
            .arg(&script)
            .args(["127.0.0.1", &port.to_string()])
            .arg(&msgs)
            .args(tls)
            .stdout(log)
            .spawn()
            .unwrap();
        wait_port(port);
        Some(Self { child, port, dir })
    }

    /// `smtp-sink` (PIPELINING offered) with extra fault options; messages dumped to files.
    fn smtp_sink(faults: &[&str]) -> Option<Self> {
        if Command::new("smtp-sink")
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            skip("smtp-sink is not installed (apt-get install postfix)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let msgs = dir.path().join("msgs");
        std::fs::create_dir(&msgs).unwrap();
        std::fs::File::create(dir.path().join("received.log")).unwrap();
        let port = free_port();
        let mut cmd = Command::new("smtp-sink");
        if nix_root() {
            cmd.args(["-u", "nobody"]);
            // smtp-sink drops privileges: let it write the dumps.
            let _ = Command::new("chmod").arg("777").arg(&msgs).status();
            let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        }
        cmd.args(faults)
            .arg("-d")
            .arg(format!("{}/%M.", msgs.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("64")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap();
        wait_port(port);
        Some(Self { child, port, dir })
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("msgs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.trim_end_matches('.').parse::<u64>().ok())
                .unwrap_or(0)
        });
        paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("received.log")).unwrap()
    }
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn open_spool(dir: &Path) -> Arc<Spool> {
    Arc::new(Spool::open(&dir.join("queue"), SpoolOptions::default()).unwrap())
}

fn enqueue(spool: &Spool, rcpts: &[&str], body: &[u8]) -> QueueId {
    let rcpts: Vec<EmailAddress> = rcpts.iter().map(|a| a.parse().unwrap()).collect();
    let routes: Vec<Route> = rcpts
        .iter()
        .map(|r| Route::new(Lane::Modern, r.clone()))
        .collect();
    let env = Envelope {
        sender: ReversePath::Mailbox("alice@legacy.test".parse().unwrap()),
        recipients: rcpts,
    };
    spool
        .enqueue(&env, &routes, body, SystemTime::now())
        .unwrap()
}

/// The recipients' states; empty once the message has left the queue.
fn states(spool: &Spool, id: QueueId) -> Vec<RcptState> {
    match spool.show(id, SystemTime::now()) {
        Ok(detail) => detail.info.recipients.iter().map(|r| r.state).collect(),
        Err(_) => vec![],
    }
}

fn options(port: u16) -> SmtpClientOptions {
    let mut o = SmtpClientOptions::new("127.0.0.1", port, "gw.test");
    o.connect_timeout = Duration::from_secs(2);
    o.reply_timeout = Duration::from_secs(10);
    o.data_timeout = Duration::from_secs(10);
    o
}

/// Runs the agent until `done` holds (or 20 s), then stops it and waits for it.
async fn run_until(
    spool: &Arc<Spool>,
    opts: SmtpClientOptions,
    mut done: impl FnMut() -> bool,
) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::default());
    let agent =
        SmtpAgent::new(opts, Lane::Modern, Arc::clone(spool), Arc::clone(&metrics)).unwrap();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(agent.run(shutdown.subscribe()));
    let start = Instant::now();
    while !done() && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("agent stops")
        .unwrap();
    metrics
}

const DOTTED: &[u8] = b"From: alice@legacy.test\r\nTo: bob@modern.test\r\nSubject: dots\r\n\r\n\
.starts with a dot\r\n..two dots\r\n.\r\nbare LF line\nlast line without newline";
const DOTTED_WIRE: &[u8] =
    b"From: alice@legacy.test\r\nTo: bob@modern.test\r\nSubject: dots\r\n\r\n\
.starts with a dot\r\n..two dots\r\n.\r\nbare LF line\r\nlast line without newline\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_byte_correct_with_dot_stuffing() {
    let Some(mx) = Downstream::aiosmtpd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    let id = enqueue(&spool, &["bob@modern.test", "carol@modern.test"], DOTTED);
    run_until(&spool, options(mx.port), || states(&spool, id).is_empty()).await;
    assert!(states(&spool, id).is_empty(), "delivered and gone");
    let msgs = mx.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&msgs[0]),
        String::from_utf8_lossy(DOTTED_WIRE)
    );
    assert!(
        mx.log()
            .contains("alice@legacy.test bob@modern.test,carol@modern.test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_recipient_4xx_defers_and_5xx_bounces() {
    let Some(mx) = Downstream::aiosmtpd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    let id = enqueue(
        &spool,
        &["ok@modern.test", "defer@modern.test", "reject@modern.test"],
        b"Subject: mixed\r\n\r\nhello\r\n",
    );
    let want = [RcptState::Delivered, RcptState::Deferred, RcptState::Failed];
    run_until(&spool, options(mx.port), || states(&spool, id) == want).await;
    assert_eq!(states(&spool, id), want);
    let detail = spool.show(id, SystemTime::now()).unwrap();
    let r = &detail.info.recipients;
    assert_eq!(r[1].status.as_deref(), Some("4.2.1"), "{r:?}");
    assert!(
        r[1].delay_reason
            .as_deref()
            .unwrap()
            .contains("mailbox busy")
    );
    assert_eq!(r[2].status.as_deref(), Some("5.1.1"), "{r:?}");
    assert!(
        r[2].bounce_reason
            .as_deref()
            .unwrap()
            .contains("no such user")
    );
    // One bounce for the rejected recipient, to the sender.
    let bounces = spool.unrouted(10);
    assert_eq!(bounces.len(), 1);
    assert_eq!(bounces[0].sender, ReversePath::Null);
    // Only the accepted recipient got the message.
    assert_eq!(mx.messages().len(), 1);
    assert!(mx.log().contains(" ok@modern.test plain\n"), "{}", mx.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_next_hop_defers_everything_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    let ids: Vec<QueueId> = (0..3)
        .map(|i| {
            enqueue(
                &spool,
                &["bob@modern.test", "carol@modern.test"],
                format!("Subject: {i}\r\n\r\nhi\r\n").as_bytes(),
            )
        })
        .collect();
    let port = free_port(); // nothing listens there any more
    let all_deferred = || {
        ids.iter()
            .all(|&id| states(&spool, id) == [RcptState::Deferred, RcptState::Deferred])
    };
    run_until(&spool, options(port), all_deferred).await;
    assert!(all_deferred());
    for &id in &ids {
        let detail = spool.show(id, SystemTime::now()).unwrap();
        for r in &detail.info.recipients {
            assert_eq!(r.status.as_deref(), Some("4.4.1"), "{r:?}");
            assert!(
                r.delay_reason.as_deref().unwrap().contains("connect"),
                "{r:?}"
            );
        }
    }
    assert!(spool.unrouted(10).is_empty(), "no bounce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuses_one_connection_for_several_messages() {
    let Some(mx) = Downstream::aiosmtpd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    let ids: Vec<QueueId> = (0..5)
        .map(|i| {
            enqueue(
                &spool,
                &["bob@modern.test"],
                format!("Subject: {i}\r\n\r\nmessage {i}\r\n").as_bytes(),
            )
        })
        .collect();
    let mut opts = options(mx.port);
    opts.concurrency = 1;
    let metrics = run_until(&spool, opts, || {
        ids.iter().all(|&id| states(&spool, id).is_empty())
    })
    .await;
    let _ = metrics;
    assert!(ids.iter().all(|&id| states(&spool, id).is_empty()));
    let log = mx.log();
    let peers: std::collections::BTreeSet<&str> =
        log.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(log.lines().count(), 5, "{log}");
    assert_eq!(peers.len(), 1, "one connection for five messages: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_delivery_to_smtp_sink() {
    let Some(sink) = Downstream::smtp_sink(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    let ids: Vec<QueueId> = (0..4)
        .map(|_| enqueue(&spool, &["bob@modern.test", "carol@modern.test"], DOTTED))
        .collect();
    run_until(&spool, options(sink.port), || {
        ids.iter().all(|&id| states(&spool, id).is_empty())
    })
    .await;
    assert!(ids.iter().all(|&id| states(&spool, id).is_empty()));
    let msgs = sink.messages();
    assert_eq!(msgs.len(), 4);
    for m in &msgs {
        // smtp-sink's dump: its own headers on top, LF line ends, dots unstuffed, a blank
        // line at the end.
        let text = String::from_utf8_lossy(m);
        let want = format!(
            "{}\n",
            String::from_utf8_lossy(DOTTED_WIRE).replace("\r\n", "\n")
        );
        assert!(text.ends_with(&want), "{}", m.escape_ascii());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_rcpt_refusals_from_smtp_sink() {
    for (fault, want) in [("-r", RcptState::Deferred), ("-f", RcptState::Failed)] {
        let Some(sink) = Downstream::smtp_sink(&[fault, "RCPT"]) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let spool = open_spool(dir.path());
        let id = enqueue(&spool, &["bob@modern.test"], b"Subject: x\r\n\r\nhi\r\n");
        let settled = || match want {
            // Failed for good: the message leaves the queue and a bounce waits for routing.
            RcptState::Failed => states(&spool, id).is_empty() && !spool.unrouted(1).is_empty(),
            _ => states(&spool, id) == [want],
        };
        run_until(&spool, options(sink.port), settled).await;
        assert!(settled(), "{fault}: {:?}", states(&spool, id));
        assert!(sink.messages().is_empty(), "{fault}");
    }
}

/// A CA, a certificate for 127.0.0.1 signed by it, and a second, unrelated CA, made with the
/// openssl command line; `None` (after a SKIPPED line) without it.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn make() -> Option<Self> {
        if Command::new("openssl").arg("version").output().is_err() {
            skip("openssl is not installed");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        for ca in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-subj",
                &format!("/CN=ccgate test {ca}"),
            ]);
        }
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "mx.key",
            "-out",
            "mx.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "mx.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "mx.pem",
        ]);
        Some(Self { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn with_tls(port: u16, tls: TlsPolicy) -> SmtpClientOptions {
    let mut o = options(port);
    o.tls = tls;
    o
}

/// A CA and aiosmtpd offering STARTTLS with a certificate it signed, and a spool holding one
/// message for bob.
struct TlsSetup {
    pki: Pki,
    mx: Downstream,
    _dir: tempfile::TempDir,
    spool: Arc<Spool>,
    id: QueueId,
}

impl TlsSetup {
    fn new() -> Option<Self> {
        let pki = Pki::make()?;
        let mx = Downstream::aiosmtpd_with(&[&pki.path("mx.pem"), &pki.path("mx.key")])?;
        let dir = tempfile::tempdir().unwrap();
        let spool = open_spool(dir.path());
        let id = enqueue(
            &spool,
            &["bob@modern.test"],
            b"Subject: tls\r\n\r\nsecret\r\n",
        );
        Some(Self {
            pki,
            mx,
            _dir: dir,
            spool,
            id,
        })
    }
}

// See: the README's next-hop TLS levels (Postfix's smtp_tls_security_level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_delivers_over_tls_to_a_trusted_certificate() {
    let Some(TlsSetup {
        pki,
        mx,
        _dir,
        spool,
        id,
    }) = TlsSetup::new()
    else {
        return;
    };
    let policy = TlsPolicy::Verify {
        ca_file: Some(pki.path("ca.pem")),
    };
    run_until(&spool, with_tls(mx.port, policy), || {
        states(&spool, id).is_empty()
    })
    .await;
    assert!(states(&spool, id).is_empty(), "delivered and gone");
    assert!(mx.log().contains("bob@modern.test tls"), "{}", mx.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_defers_an_untrusted_certificate_and_never_falls_back() {
    let Some(TlsSetup {
        pki,
        mx,
        _dir,
        spool,
        id,
    }) = TlsSetup::new()
    else {
        return;
    };
    let policy = TlsPolicy::Verify {
        ca_file: Some(pki.path("other-ca.pem")),
    };
    run_until(&spool, with_tls(mx.port, policy), || {
        states(&spool, id) == [RcptState::Deferred]
    })
    .await;
    let detail = spool.show(id, SystemTime::now()).unwrap().info;
    let r = &detail.recipients[0];
    assert_eq!(r.state, RcptState::Deferred);
    assert_eq!(r.status.as_deref(), Some("4.7.5"), "{r:?}");
    assert!(
        mx.messages().is_empty(),
        "nothing sent in plaintext: {}",
        mx.log()
    );
    // `may` takes the same certificate (opportunistic TLS: encryption, no authentication).
    let retry = ccgate_queue::AdminRequest {
        action: ccgate_queue::AdminAction::Retry,
        ids: vec![id.to_string()],
        all: false,
        filter: ccgate_queue::Filter::default(),
    };
    spool.admin(&retry, SystemTime::now()).unwrap();
    run_until(&spool, with_tls(mx.port, TlsPolicy::May), || {
        states(&spool, id).is_empty()
    })
    .await;
    assert!(states(&spool, id).is_empty(), "delivered and gone");
    assert!(mx.log().contains("bob@modern.test tls"), "{}", mx.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypt_defers_when_starttls_is_not_offered() {
    let Some(mx) = Downstream::aiosmtpd() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    let id = enqueue(
        &spool,
        &["bob@modern.test"],
        b"Subject: tls\r\n\r\nsecret\r\n",
    );
    run_until(&spool, with_tls(mx.port, TlsPolicy::Encrypt), || {
        states(&spool, id) == [RcptState::Deferred]
    })
    .await;
    let r = spool.show(id, SystemTime::now()).unwrap().info.recipients[0].clone();
    assert_eq!(r.state, RcptState::Deferred);
    assert_eq!(r.status.as_deref(), Some("4.7.4"), "{r:?}");
    assert!(mx.messages().is_empty());
}

#[test]
fn verify_without_a_usable_ca_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path());
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    for ca_file in [dir.path().join("missing.pem"), empty] {
        let opts = with_tls(
            25,
            TlsPolicy::Verify {
                ca_file: Some(ca_file.clone()),
            },
        );
        let err = SmtpAgent::new(
            opts,
            Lane::Modern,
            Arc::clone(&spool),
            Arc::new(Metrics::default()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(&ca_file.display().to_string()), "{err}");
    }
}
