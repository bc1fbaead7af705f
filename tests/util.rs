//! Helpers for running the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `ccgate` binary cargo built for these tests.
pub fn ccgate() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ccgate"));
    // Never pick up a developer's ./ccgate.toml.
    cmd.current_dir(std::env::temp_dir());
    cmd
}

/// Runs `ccgate ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    ccgate().args(args).output().expect("ccgate runs")
}

/// The crate's golden data folder.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/ccmail/tests/data")
        .join(rel)
}

/// Standard output and error as text.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts the process ended by itself, without a panic or a signal.
pub fn assert_no_crash(out: &Output) {
    let (_, stderr) = texts(out);
    assert!(out.status.code().is_some(), "killed by a signal: {out:?}");
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------
// A running `ccgate run`, real SMTP peers and a raw SMTP client (tests/smtp.rs).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The host name the test gateway greets with and writes into `Received:`.
pub const GATEWAY_HOST: &str = "mx.ccgate.test";
/// The test gateway's legacy domain (mail stays queued: no legacy delivery yet).
pub const LEGACY_DOMAIN: &str = "legacy.example.test";
/// The test gateway's modern domain (delivered into the Maildir `data/modern`).
pub const MODERN_DOMAIN: &str = "modern.example.test";

/// Local parts of the test users in [`MODERN_DOMAIN`]: `migrated` directory entries whose proxy
/// and target address are both `local@MODERN_DOMAIN`, so mail to them is accepted and delivered
/// into the Maildir unchanged. Any other address in our domains gets `550 5.1.1`.
pub const TEST_USERS: &[&str] = &[
    "alice", "carol", "victim", "zoë", "killtest", "probe0", "probe1", "probe2", "probe3",
    "probe4", "probe5", "probe6", "probe7", "probe8", "user1", "user2", "user3", "user4", "user5",
];

/// The directory CSV (docs/directory.md) holding [`TEST_USERS`].
pub fn test_directory() -> String {
    let mut csv =
        String::from("display_name,legacy_name,post_office,proxy_addresses,target_address,state\n");
    for (i, user) in TEST_USERS.iter().enumerate() {
        let addr = format!("{user}@{MODERN_DOMAIN}");
        csv.push_str(&format!(
            "Test User {i},\"User, Test{i}\",HQ,SMTP:{addr},SMTP:{addr},migrated\n"
        ));
    }
    csv
}

/// Finds an external tool on `PATH` (and in the sbin folders, where Postfix keeps its tools).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The variable `.ci/run` sets: there every peer is installed, so a missing one is a broken
/// install step and fails the test instead of skipping it.
pub const REQUIRE_PEERS: &str = "CCGATE_REQUIRE_PEERS";

/// A test cannot run because a peer is missing: prints `SKIPPED: <why>` so the test passes on a
/// developer machine that lacks the peer, or panics when [`REQUIRE_PEERS`] is set (CI).
pub fn skip(why: &str) {
    assert!(
        std::env::var_os(REQUIRE_PEERS).is_none(),
        "{why}, and {REQUIRE_PEERS} is set: every peer must be installed (see .ci/run)"
    );
    eprintln!("SKIPPED: {why}");
}

/// The tool's path, or `None` after [`skip`] (CI installs every peer; a developer machine may
/// lack some).
pub fn require_tool(name: &str, test: &str) -> Option<PathBuf> {
    let found = find_tool(name);
    if found.is_none() {
        skip(&format!("{name} not installed ({test})"));
    }
    found
}

/// Python 3 with smtplib, or `None` after [`skip`].
pub fn require_python(test: &str) -> Option<PathBuf> {
    let python = require_tool("python3", test)?;
    let ok = Command::new(&python)
        .args(["-c", "import smtplib, ssl, json"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(python)
    } else {
        skip(&format!("python3 without smtplib/ssl ({test})"));
        None
    }
}

/// A fresh token to find one test's message among others.
pub fn token(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{tag}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `f` every 50 ms until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One message in the gateway's Maildir (`new/`).
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The file.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl Delivered {
    /// The content as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The header lines above the first `Received:` (`Return-Path:`, `Delivered-To:`).
    pub fn delivery_lines(&self) -> Vec<String> {
        self.text()
            .split("\r\n")
            .take_while(|l| !l.starts_with("Received:"))
            .map(str::to_owned)
            .collect()
    }

    /// The `Delivered-To:` addresses.
    pub fn delivered_to(&self) -> Vec<String> {
        self.delivery_lines()
            .iter()
            .filter_map(|l| l.strip_prefix("Delivered-To: "))
            .map(str::to_owned)
            .collect()
    }

    /// The first `Received:` header, unfolded (`None` if there is none).
    pub fn received(&self) -> Option<String> {
        let text = self.text();
        let start = text.find("\r\nReceived: ")? + 2;
        let rest = text.get(start..)?;
        let mut out = String::new();
        for (i, line) in rest.split("\r\n").enumerate() {
            if i > 0 && !line.starts_with([' ', '\t']) {
                break;
            }
            out.push_str(line.trim_start());
            out.push(' ');
        }
        Some(out.trim_end().to_owned())
    }

    /// The queue id the first `Received:` header names (`... id ID; date`).
    pub fn queue_id(&self) -> Option<String> {
        let received = self.received()?;
        let after = received.split(" id ").nth(1)?;
        Some(after.split(';').next()?.trim().to_owned())
    }
}

/// A `ccgate run` on its own data folder, with a config written for the test. Killed (by PID)
/// when dropped.
pub struct Gateway {
    dir: tempfile::TempDir,
    /// The config file.
    pub config: PathBuf,
    /// The SMTP port bound by the current run.
    pub port: u16,
    child: Option<Child>,
    logs: Vec<PathBuf>,
}

impl Gateway {
    /// Writes a config (extra `[smtp]` keys in `smtp_extra`) and the directory of
    /// [`TEST_USERS`], and starts the gateway.
    pub fn start(smtp_extra: &str) -> Self {
        Self::start_with(smtp_extra, "", "", &test_directory())
    }

    /// As [`Gateway::start`], with more `[legacy]` and `[admin]` keys and another directory.
    pub fn start_with(
        smtp_extra: &str,
        legacy_extra: &str,
        admin_extra: &str,
        directory: &str,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("ccgate.toml");
        let text = format!(
            "data_dir = \"data\"\n\n[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"{GATEWAY_HOST}\"\n\
             {smtp_extra}\n\n[legacy]\ndomain = \"{LEGACY_DOMAIN}\"\n{legacy_extra}\n\n[modern]\n\
             domain = \"{MODERN_DOMAIN}\"\n\n[directory]\nsource = \"directory.csv\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n{admin_extra}\n"
        );
        std::fs::write(&config, text).expect("write config");
        std::fs::write(dir.path().join("directory.csv"), directory).expect("directory");
        let mut gw = Self {
            dir,
            config,
            port: 0,
            child: None,
            logs: Vec::new(),
        };
        gw.spawn();
        gw
    }

    /// The test's folder (config, data, scratch files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The PID of the current run.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway running").id()
    }

    /// Starts `ccgate run` (again) on the same config and data; waits for the banner line
    /// `ccgate: smtp        127.0.0.1:PORT  (...)` and takes the port from it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the gateway is already running");
        let log = self
            .dir
            .path()
            .join(format!("ccgate-run-{}.log", self.logs.len() + 1));
        let err = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ccgate"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("ccgate run starts");
        self.child = Some(child);
        self.logs.push(log.clone());
        let port = wait_for(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.starts_with("ccgate: smtp ")) {
                let addr = line
                    .trim_start_matches("ccgate: smtp")
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(',');
                let addr: std::net::SocketAddr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("banner {line:?}: {e}"));
                return Some(addr.port());
            }
            if let Ok(Some(status)) = self.child.as_mut().expect("child").try_wait() {
                panic!("ccgate run exited ({status}) before listening:\n{text}");
            }
            None
        });
        self.port = port.unwrap_or_else(|| {
            panic!(
                "ccgate run printed no 'ccgate: smtp' line within 30 s:\n{}",
                self.log()
            )
        });
    }

    /// Everything every run wrote to stderr.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---- next run ----\n")
    }

    /// SIGKILL (by PID) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (`TERM`, `INT`, ...) to the gateway's PID with kill(1).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits up to `limit` for the gateway to exit; its status, or `None` if still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("gateway running");
        let status = wait_for(limit, || child.try_wait().expect("try_wait"))?;
        self.child = None;
        Some(status)
    }

    /// The Maildir the `modern` lane delivers into.
    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("data/modern")
    }

    /// Every message in the Maildir's `new/` now.
    pub fn delivered(&self) -> Vec<Delivered> {
        let Ok(entries) = std::fs::read_dir(self.maildir().join("new")) else {
            return Vec::new();
        };
        let mut out: Vec<Delivered> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let path = e.path();
                let bytes = std::fs::read(&path).ok()?;
                Some(Delivered { path, bytes })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    /// Waits up to `limit` until the Maildir holds at least `n` messages; returns them all.
    pub fn wait_delivered(&self, n: usize, limit: Duration) -> Vec<Delivered> {
        wait_for(limit, || {
            let d = self.delivered();
            (d.len() >= n).then_some(d)
        })
        .unwrap_or_else(|| {
            panic!(
                "the Maildir holds {} message(s), expected {n} within {limit:?}; log:\n{}",
                self.delivered().len(),
                self.log()
            )
        })
    }

    /// The delivered message whose `Received:` names `id`, waiting up to `limit`.
    pub fn wait_delivered_id(&self, id: &str, limit: Duration) -> Delivered {
        wait_for(limit, || {
            self.delivered()
                .into_iter()
                .find(|d| d.queue_id().as_deref() == Some(id))
        })
        .unwrap_or_else(|| {
            panic!(
                "queue id {id} was not delivered to the Maildir within {limit:?}; Maildir holds {:?}; log:\n{}",
                self.delivered()
                    .iter()
                    .map(Delivered::queue_id)
                    .collect::<Vec<_>>(),
                self.log()
            )
        })
    }

    /// Runs `ccgate --config CONFIG ARGS` (e.g. queue commands) next to the running gateway.
    pub fn command(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ccgate"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("ccgate runs")
    }

    /// `ccgate queue list --json` on this gateway's config: one JSON object per message.
    pub fn queue_list(&self) -> Vec<serde_json::Value> {
        let out = self.command(&["queue", "list", "--json"]);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "ccgate queue list --json failed ({}): {stderr}",
            out.status
        );
        stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("queue list line {l:?} is not JSON: {e}"))
            })
            .collect()
    }

    /// The queue ids `ccgate queue list --json` shows.
    pub fn queued_ids(&self) -> Vec<String> {
        self.queue_list()
            .iter()
            .filter_map(|m| m.get("queue_id")?.as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One SMTP reply: the code and the text of each line (after `NNN-` / `NNN `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// One entry per line.
    pub lines: Vec<String>,
}

impl Reply {
    /// The first line as sent, e.g. `250 2.0.0 Ok: queued as ID`.
    pub fn first(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map_or("", String::as_str)
        )
    }

    /// The queue id of a `250 2.0.0 Ok: queued as ID` reply.
    pub fn queued_id(&self) -> Option<String> {
        if self.code != 250 {
            return None;
        }
        let text = self.lines.first()?;
        Some(text.split("queued as ").nth(1)?.trim().to_owned())
    }
}

/// A raw SMTP client over TCP: bytes out exactly as given, replies parsed.
pub struct RawSmtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawSmtp {
    /// Connects (20 s read timeout, so a silent server fails the test instead of hanging it).
    pub fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Connects and reads the greeting, which must be 220.
    pub fn open(addr: &str) -> Self {
        let mut c = Self::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let greeting = c.reply().expect("a greeting");
        assert_eq!(greeting.code, 220, "greeting: {greeting:?}");
        c
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Reads one reply (through the gateway's own [`ccgate_smtp::ReplyReader`]); `Ok(None)` at
    /// end of stream.
    pub fn try_reply(&mut self) -> std::io::Result<Option<Reply>> {
        let mut reader = ccgate_smtp::ReplyReader::new();
        let mut started = false;
        loop {
            let mut raw = Vec::new();
            let n = self.reader.read_until(b'\n', &mut raw)?;
            if n == 0 {
                return if started {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "reply cut short",
                    ))
                } else {
                    Ok(None)
                };
            }
            started = true;
            let done = reader
                .push_line(&raw)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            if let Some(reply) = done {
                return Ok(Some(Reply {
                    code: reply.code,
                    lines: reply.lines,
                }));
            }
        }
    }

    /// Reads one reply; panics at end of stream or on an error.
    pub fn reply(&mut self) -> Option<Reply> {
        self.try_reply()
            .unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    /// Sends `line` CR LF and reads the reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("sending {line:?}: {e}"));
        self.reply()
            .unwrap_or_else(|| panic!("connection closed after {line:?}"))
    }

    /// Every reply until the server closes the connection.
    pub fn replies_until_close(&mut self) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Some(r) = self.reply() {
            out.push(r);
        }
        out
    }
}

/// Runs a Python script written to `dir` with `args`; returns its output.
pub fn python(python: &Path, dir: &Path, name: &str, script: &str, args: &[&str]) -> Output {
    let file = dir.join(name);
    std::fs::write(&file, script).expect("write script");
    Command::new(python)
        .arg(&file)
        .args(args)
        .output()
        .expect("python3 runs")
}

/// Parses the last stdout line of a Python helper as JSON, or fails with its output.
pub fn python_json(out: &Output) -> serde_json::Value {
    let (stdout, stderr) = texts(out);
    assert!(
        out.status.success(),
        "python failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("python printed {last:?} ({e}); stderr: {stderr}"))
}
