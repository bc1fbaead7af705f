//! Measures lettre 0.11's blocking SmtpConnection (for bench/replay_handoff.sh) against a listener: N messages of ~4 KB on
//! one connection. Modes: `send` (SmtpConnection::send: body and final dot written
//! separately, no TCP_NODELAY) and `onewrite` (MAIL/RCPT/DATA by `command`, then the
//! dot-stuffed body and its final dot smuggled through `command` as one write).
use std::fmt;
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::client::SmtpConnection;
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::ClientId;

struct Raw<'a>(&'a str);
impl fmt::Display for Raw<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, n, mode, from, to] = args.as_slice() else {
        eprintln!("usage: lettre-probe HOST:PORT N send|onewrite FROM TO");
        std::process::exit(2);
    };
    let n: usize = n.parse().unwrap();
    let from: Address = from.parse().unwrap();
    let to: Address = to.parse().unwrap();
    let envelope = Envelope::new(Some(from.clone()), vec![to.clone()]).unwrap();
    let mut conn = SmtpConnection::connect(
        addr.as_str(),
        Some(Duration::from_secs(60)),
        &ClientId::Domain("probe.example".into()),
        None,
        None,
    )
    .unwrap();
    let filler = "x".repeat(70);
    let started = Instant::now();
    for i in 0..n {
        let mut body = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nMessage-ID: <probe-{mode}-{i}-{}@probe.example>\r\nSubject: probe {i}\r\n\r\n",
            std::process::id()
        );
        while body.len() < 4096 {
            body.push_str(&filler);
            body.push_str("\r\n");
        }
        match mode.as_str() {
            "send" => {
                conn.send(&envelope, body.as_bytes()).unwrap();
            }
            _ => {
                conn.command(Mail::new(Some(from.clone()), vec![])).unwrap();
                conn.command(Rcpt::new(to.clone(), vec![])).unwrap();
                conn.command(Data).unwrap();
                // No line starts with a dot here; a real client would dot-stuff.
                body.push_str(".\r\n");
                conn.command(Raw(&body)).unwrap();
            }
        }
    }
    let took = started.elapsed();
    let _ = conn.quit();
    println!(
        "lettre {mode}: {n} messages in {:.2} s: {:.1} msg/s, {:.2} ms each",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
}
