//! A full disk heals by itself (issue 12): the gateway's data folder on a small real tmpfs is
//! filled up; SMTP answers `452 4.3.1`, `/readyz` says why, `/healthz` stays 200; once space
//! is freed, mail is accepted and delivered again without a restart, and nothing that was
//! acknowledged is lost. `MAIL FROM` is answered `452 4.3.1` while the spool is not taking
//! mail (full, or below `min_free` plus the declared `SIZE=`). A write whose roll-back fails
//! (a loop-mounted ext4 image filled up, its segments made append-only with `chattr +a` so
//! cutting them back fails with EPERM) stops the spool: `/healthz` 503. Needs root (mount);
//! says SKIPPED otherwise (and fails under `CCGATE_REQUIRE_PEERS`, as CI runs it).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{Gateway, MODERN_DOMAIN, RawSmtp, skip, wait_for};

/// A tmpfs mounted at `path` for the test; unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn new(path: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(path.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A gateway (extra config `extra`) whose data folder is moved onto a small file system that
/// `mount` puts there: started once to lay out its folders, stopped, mounted over, started
/// again. `None` after [`skip`] when the file system cannot be mounted (not root).
fn on_small_disk<M>(extra: &str, mount: impl FnOnce(&Path) -> Option<M>) -> Option<(Gateway, M)> {
    let mut gw = Gateway::start(extra);
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(30)).is_some());
    let Some(mounted) = mount(&gw.dir().join("data")) else {
        skip("cannot mount a small file system for the data folder (not root, or no mkfs.ext4?)");
        return None;
    };
    gw.spawn();
    Some((gw, mounted))
}

/// One message over SMTP; the reply to its final dot (or to the first refused command).
fn send(addr: &str, n: usize) -> crate::util::Reply {
    let mut c = RawSmtp::open(addr);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let r = c.cmd("MAIL FROM:<sender@client.test>");
    if r.code != 250 {
        return r;
    }
    assert_eq!(c.cmd(&format!("RCPT TO:<user1@{MODERN_DOMAIN}>")).code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    let mut body = format!("Subject: disk full {n}\r\n\r\n").into_bytes();
    for _ in 0..200 {
        body.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    body.extend_from_slice(b".\r\n");
    c.send(&body).unwrap();
    let r = c.reply().expect("a reply to the final dot");
    let _ = c.send(b"QUIT\r\n");
    r
}

/// The reply to `MAIL FROM` (with `SIZE=` when given) on a new connection.
fn mail_from(addr: &str, size: Option<u64>) -> crate::util::Reply {
    let mut c = RawSmtp::open(addr);
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    let size = size.map(|n| format!(" SIZE={n}")).unwrap_or_default();
    let r = c.cmd(&format!("MAIL FROM:<sender@client.test>{size}"));
    let _ = c.send(b"QUIT\r\n");
    r
}

/// Bytes free for an unprivileged writer on the file system holding `path` (`stat -f`).
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

/// Grows `file` until the file system holding it has about `left` bytes free.
fn fill_until(file: &Path, left: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let chunk = vec![0u8; 1 << 16];
    while free_bytes(file) > left + chunk.len() as u64 {
        f.write_all(&chunk).unwrap();
    }
    f.sync_all().unwrap();
}

/// `GET path` on the admin listener: (status, body).
fn get(admin: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(admin).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

fn admin_addr(gw: &Gateway) -> String {
    let log = gw.log();
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with("ccgate: admin"))
        .unwrap_or_else(|| panic!("no admin banner:\n{log}"));
    line.split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned()
}

#[test]
fn a_full_disk_gives_452_then_mail_flows_again_by_itself() {
    // min_free off: this test is about real ENOSPC from the file system, not the floor.
    let Some((mut gw, mount)) =
        on_small_disk("\n[queue]\nretry = [\"1s\"]\nmin_free = 0\n", |data| {
            Mount::new(data, "16m")
        })
    else {
        return;
    };
    let data = gw.dir().join("data");
    let addr = gw.addr();
    let admin = admin_addr(&gw);
    assert_eq!(get(&admin, "/readyz").0, 200);

    let mut acked = Vec::new();
    for n in 0..3 {
        let r = send(&addr, n);
        assert_eq!(r.code, 250, "{}", r.first());
        acked.push(r.queued_id().expect("queue id in the 250"));
    }
    gw.wait_delivered(3, Duration::from_secs(30));

    // Fill the file system to the last byte.
    let filler = data.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 1 << 16];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.write_all(&[0]);
    drop(f);

    // The disk fills during this message: refused after its data (the spool learns it from
    // the failed write, which it rolls back).
    let r = send(&addr, 100);
    assert_eq!(r.code, 452, "on a full disk: {}", r.first());
    assert!(r.first().contains("4.3.1"), "{}", r.first());
    let (status, body) = get(&admin, "/readyz");
    assert_eq!(status, 503, "/readyz on a full disk: {body}");
    assert!(body.contains("disk_full"), "{body}");
    assert_eq!(
        get(&admin, "/healthz").0,
        200,
        "a full disk needs no restart"
    );
    let (_, metrics) = get(&admin, "/metrics");
    assert!(metrics.contains("ccgate_spool_accepting 0"), "{metrics}");
    assert!(metrics.contains("ccgate_spool_status{reason=\"disk_full\"} 1"));
    // Still refused while full, now at MAIL FROM (as Postfix does), before any data is sent.
    let r = mail_from(&addr, None);
    assert_eq!(r.code, 452, "MAIL FROM on a full disk: {}", r.first());
    assert!(r.first().contains("4.3.1"), "{}", r.first());
    assert_eq!(send(&addr, 101).code, 452);

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let taken = wait_for(Duration::from_secs(60), || {
        let r = send(&addr, 200);
        (r.code == 250).then(|| r.queued_id().expect("queue id"))
    })
    .unwrap_or_else(|| {
        panic!(
            "still refusing mail 60 s after space returned:\n{}",
            gw.log()
        )
    });
    println!(
        "mail accepted again {:?} after space was freed",
        freed.elapsed()
    );
    acked.push(taken);
    let (status, body) = get(&admin, "/readyz");
    assert_eq!(status, 200, "{body}");

    // Nothing acknowledged is lost: every acknowledged message is delivered.
    for id in &acked {
        gw.wait_delivered_id(id, Duration::from_secs(60));
    }
    assert!(
        wait_for(Duration::from_secs(30), || gw
            .queued_ids()
            .is_empty()
            .then_some(()))
        .is_some()
    );
    gw.kill9();
    drop(mount);
}

#[test]
fn below_min_free_mail_from_gets_452_and_a_declared_size_counts() {
    let Some((mut gw, mount)) = on_small_disk(
        "\n[queue]\nretry = [\"1s\"]\nmin_free = \"4MB\"\n",
        |data| Mount::new(data, "16m"),
    ) else {
        return;
    };
    let data = gw.dir().join("data");
    let addr = gw.addr();
    let admin = admin_addr(&gw);
    let filler = data.join("filler");

    // About 6 MB free, the floor at 4 MB: a message declared at 1 kB fits, one of 3 MB not.
    fill_until(&filler, 6 << 20);
    let r = mail_from(&addr, Some(1000));
    assert_eq!(r.code, 250, "{}", r.first());
    let r = mail_from(&addr, Some(3_000_000));
    assert_eq!(r.code, 452, "SIZE=3000000 with 6 MB free: {}", r.first());
    assert!(r.first().contains("4.3.1"), "{}", r.first());
    let r = send(&addr, 1);
    assert_eq!(r.code, 250, "{}", r.first());
    let acked = r.queued_id().expect("queue id in the 250");

    // Below the floor: refused at MAIL FROM, whatever the size; the reason on /readyz.
    fill_until(&filler, 3 << 20);
    let r = mail_from(&addr, None);
    assert_eq!(r.code, 452, "MAIL FROM below min_free: {}", r.first());
    assert!(r.first().contains("4.3.1"), "{}", r.first());
    let (status, body) = get(&admin, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("low_space"), "{body}");

    // Space back: MAIL FROM is answered 250 again, and the message is taken.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(mail_from(&addr, None).code, 250);
    let r = send(&addr, 2);
    assert_eq!(r.code, 250, "{}", r.first());
    for id in [acked, r.queued_id().expect("queue id")] {
        gw.wait_delivered_id(&id, Duration::from_secs(60));
    }
    gw.kill9();
    drop(mount);
}

/// An ext4 file system in an image file, loop-mounted at `path` for the test; unmounted
/// (and the image removed) when dropped.
struct LoopExt4 {
    mount: PathBuf,
    image: tempfile::TempDir,
}

impl LoopExt4 {
    fn new(path: &Path, megabytes: u64) -> Option<Self> {
        std::fs::create_dir_all(path).unwrap();
        let image = tempfile::tempdir().unwrap();
        let file = image.path().join("fs.img");
        std::fs::File::create(&file)
            .unwrap()
            .set_len(megabytes << 20)
            .unwrap();
        let ok = |c: &mut Command| c.status().is_ok_and(|s| s.success());
        // No blocks reserved for root: the gateway runs as root here.
        let made = ok(Command::new("mkfs.ext4").args(["-q", "-m", "0"]).arg(&file));
        (made
            && ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&file)
                .arg(path)))
        .then(|| Self {
            mount: path.to_path_buf(),
            image,
        })
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        // Whatever a failed test left append-only, and a gateway it left running.
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-a")
            .arg(&self.mount)
            .status();
        let unmounted = Command::new("umount")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        let _ = &self.image;
    }
}

/// The newest file of a spool folder (its segment being written).
fn newest(dir: &Path) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v.pop().unwrap()
}

fn chattr(flag: &str, files: &[PathBuf]) -> bool {
    Command::new("chattr")
        .arg(flag)
        .args(files)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn a_roll_back_that_fails_stops_the_spool_and_healthz_asks_for_a_restart() {
    let Some((mut gw, mount)) =
        on_small_disk("\n[queue]\nmin_free = 0\n", |data| LoopExt4::new(data, 16))
    else {
        return;
    };
    let data = gw.dir().join("data");
    let addr = gw.addr();
    let admin = admin_addr(&gw);
    let r = send(&addr, 0);
    assert_eq!(r.code, 250, "{}", r.first());
    gw.wait_delivered(1, Duration::from_secs(30));
    assert_eq!(get(&admin, "/healthz").0, 200);

    // The segments being written made append-only: writes go on, but the roll-back of a
    // failed write (cutting them back to their length before it) fails with EPERM.
    let queue = data.join("queue");
    let segments = [newest(&queue.join("data")), newest(&queue.join("journal"))];
    assert!(chattr("+a", &segments), "chattr +a {segments:?}");
    // Fill the file system to the last byte (smaller and smaller writes, then synced, so
    // nothing is left in reservations).
    let mut f = std::fs::File::create(data.join("filler")).unwrap();
    for size in [1 << 16, 4096, 1] {
        let chunk = vec![0u8; size];
        while f.write_all(&chunk).is_ok() {}
    }
    let _ = f.sync_all();
    drop(f);
    assert_eq!(free_bytes(&data), 0);

    // The write fails (ENOSPC), its roll-back too: nothing was acknowledged, and the spool
    // stops for good: only a restart (and recovery) can tell what is on disk.
    let r = send(&addr, 1);
    assert!(
        r.code / 100 == 4,
        "a message whose write failed: {}\n{}",
        r.first(),
        gw.log()
    );
    let stopped = wait_for(Duration::from_secs(30), || {
        (get(&admin, "/healthz").0 == 503).then_some(())
    });
    let (status, body) = get(&admin, "/readyz");
    let log = gw.log();
    chattr("-a", &segments);
    assert!(
        stopped.is_some(),
        "/healthz still 200 after a failed roll-back:\n{log}"
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("failed"), "/readyz: {body}");
    let (_, metrics) = get(&admin, "/metrics");
    assert!(
        metrics.contains("ccgate_spool_status{reason=\"failed\"} 1"),
        "{metrics}"
    );
    // New mail is refused at MAIL FROM meanwhile.
    assert_eq!(mail_from(&addr, None).code / 100, 4);
    gw.kill9();
    drop(mount);
}
