//! Handing RFC 5322 messages to a running gateway over SMTP.
//!
//! A small blocking client of our own, not lettre, although all or nothing per message would
//! suit replay: lettre 0.11.23's `SmtpConnection::send` takes 45-50 ms a message against the
//! gateway's listener (20-22 msg/s, where replay as a whole does 125-443 msg/s with this
//! client; figures in docs/cli.md, `ccgate replay`, from `bench/replay_handoff.sh`). It writes the body and the final dot in
//! two writes without TCP_NODELAY, so Nagle's algorithm holds the dot until the listener's
//! delayed ACK. There is no clean way around it in lettre: `NetworkStream` has no public
//! constructor from a connected `TcpStream` (`NetworkStream::connect` makes its own socket),
//! `SmtpConnection` exposes no socket to set the option on, and no feature sets it. Passing
//! the whole dot-stuffed message through `SmtpConnection::command` as one write does reach
//! 1.4-5.5 ms a message, but `command` takes `Display`, i.e. UTF-8: an 8-bit message in a
//! legacy code page cannot go that way, and nothing of lettre's `send` is left. `send` also
//! aborts the transaction and closes the connection at the first refused recipient, where
//! this client keeps the recipients the listener took and reports the others.
//!
//! This client: TCP_NODELAY, one write per command and one for the whole encoded message
//! ([`ccgate_smtp::encode_data`]), replies read with [`ReplyReader`] like the SMTP agent's.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ccgate_core::{EmailAddress, Envelope};
use ccgate_smtp::{Capabilities, MAX_REPLY_LINE, ReplyReader, ServerReply};

use super::sink::Listener;

/// How long an SMTP reply from the running gateway may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(120);

/// What the listener did: the queue id, the recipients it took, those it refused.
pub(super) type HandedOver = (String, Vec<EmailAddress>, Vec<(EmailAddress, String)>);

/// Sends one message to the running gateway's listener (connecting on first use).
pub(super) fn smtp_hand_over(
    addr: Option<SocketAddr>,
    hostname: &str,
    listener: &mut Listener,
    envelope: &Envelope,
    body: &[u8],
) -> Result<HandedOver, String> {
    if let Listener::NotTried = listener {
        *listener = match addr {
            Some(addr) if addr.port() != 0 => match SmtpClient::connect(addr, hostname) {
                Ok(client) => Listener::Open(client),
                Err(e) => Listener::Unusable(format!(
                    "`ccgate run` owns the spool but its SMTP listener {addr} does not answer \
                     ({e}); stop the gateway and replay again"
                )),
            },
            _ => Listener::Unusable(
                "`ccgate run` owns the spool and its SMTP port is not fixed in the config \
                 ([smtp] listen); stop the gateway and replay again"
                    .to_owned(),
            ),
        };
    }
    let result = match listener {
        Listener::Open(client) => client.send(envelope, body),
        Listener::Unusable(why) => return Err(why.clone()),
        Listener::NotTried => return Err("no SMTP listener".to_owned()),
    };
    result.map_err(|e| {
        let why = format!("the gateway's SMTP listener failed: {e}");
        *listener = Listener::Unusable(why.clone());
        why
    })
}

/// A plain SMTP client for the gateway's own listener.
pub(super) struct SmtpClient {
    pub(super) reader: BufReader<TcpStream>,
    pub(super) writer: TcpStream,
    pub(super) eightbit: bool,
    smtputf8: bool,
}

impl SmtpClient {
    pub(super) fn connect(addr: SocketAddr, hostname: &str) -> io::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(SMTP_TIMEOUT))?;
        stream.set_write_timeout(Some(SMTP_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut client = Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            eightbit: false,
            smtputf8: false,
        };
        let (code, text) = client.reply()?;
        if code != 220 {
            return Err(io::Error::other(format!("greeting: {code} {text}")));
        }
        let ehlo = client.command_reply(&format!("EHLO {hostname}"))?;
        if ehlo.code != 250 {
            return Err(io::Error::other(format!("EHLO: {ehlo}")));
        }
        let caps = Capabilities::from_ehlo(&ehlo);
        client.eightbit = caps.eightbitmime;
        client.smtputf8 = caps.smtputf8;
        Ok(client)
    }

    /// One reply, read through the shared [`ReplyReader`].
    pub(super) fn server_reply(&mut self) -> io::Result<ServerReply> {
        let mut reader = ReplyReader::new();
        loop {
            let mut raw = Vec::new();
            let limit = u64::try_from(MAX_REPLY_LINE).unwrap_or(u64::MAX);
            (&mut self.reader).take(limit).read_until(b'\n', &mut raw)?;
            if raw.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the listener closed the connection",
                ));
            }
            if let Some(reply) = reader.push_line(&raw).map_err(io::Error::other)? {
                return Ok(reply);
            }
        }
    }

    /// One reply: the code and its lines joined by `\n`.
    pub(super) fn reply(&mut self) -> io::Result<(u16, String)> {
        let reply = self.server_reply()?;
        Ok((reply.code, reply.text()))
    }

    pub(super) fn command_reply(&mut self, line: &str) -> io::Result<ServerReply> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.server_reply()
    }

    pub(super) fn command(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.reply()
    }

    pub(super) fn send(&mut self, envelope: &Envelope, body: &[u8]) -> io::Result<HandedOver> {
        let mut params = String::new();
        if self.eightbit && !body.is_ascii() {
            params.push_str(" BODY=8BITMIME");
        }
        let utf8 = envelope
            .sender
            .mailbox()
            .is_some_and(|m| m.needs_smtputf8())
            || envelope.recipients.iter().any(EmailAddress::needs_smtputf8);
        if self.smtputf8 && utf8 {
            params.push_str(" SMTPUTF8");
        }
        let (code, text) = self.command(&format!("MAIL FROM:<{}>{params}", envelope.sender))?;
        if code != 250 {
            let _ = self.command("RSET");
            return Err(io::Error::other(format!("MAIL FROM: {code} {text}")));
        }
        let mut taken = Vec::new();
        let mut refused = Vec::new();
        for rcpt in &envelope.recipients {
            let (code, text) = self.command(&format!("RCPT TO:<{rcpt}>"))?;
            if (200..300).contains(&code) {
                taken.push(rcpt.clone());
            } else {
                refused.push((rcpt.clone(), format!("{code} {text}")));
            }
        }
        if taken.is_empty() {
            let _ = self.command("RSET");
            return Ok((String::new(), taken, refused));
        }
        let (code, text) = self.command("DATA")?;
        if code != 354 {
            let _ = self.command("RSET");
            return Err(io::Error::other(format!("DATA: {code} {text}")));
        }
        let mut data = Vec::new();
        ccgate_smtp::encode_data(body, &mut data);
        self.writer.write_all(&data)?;
        let (code, text) = self.reply()?;
        if code != 250 {
            return Err(io::Error::other(format!("end of data: {code} {text}")));
        }
        let id = text
            .split("queued as ")
            .nth(1)
            .map_or_else(|| "?".to_owned(), |s| s.trim().to_owned());
        Ok((id, taken, refused))
    }

    pub(super) fn quit(&mut self) {
        let _ = self.command("QUIT");
    }
}
