//! Faults of the legacy side as a real site has them, against the real `ccgate run`: the
//! post office's folders on a share (a tmpfs mount: another filesystem than the data
//! folder), files that vanish, links, folders and FIFOs where export files should be, a
//! gigabyte of garbage, a truncated export, two gateways on one pickup folder, and a file
//! still being written while it is polled. For each: the other files flow, nothing is lost
//! or taken twice, and the log and the quarantine say what happened.
//!
//! Mounting needs root (CI is root); elsewhere each test prints `SKIPPED` and passes.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{Gateway, wait_for};

/// A tmpfs mounted on a fresh folder, unmounted (lazily) when dropped.
struct Share {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Share {
    /// Mounts a tmpfs of `size` (`"64m"`); `None` (and a SKIPPED line) when not allowed.
    fn mount(size: &str, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("share");
        fs::create_dir_all(&root).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&root)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(Self { _dir: dir, root }),
            Ok(out) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs ({test}): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: no mount(8) ({test}): {e}");
                None
            }
        }
    }

    /// Unmounts the tmpfs (lazily, as a share that goes away) and, with `size`, mounts a
    /// fresh one in its place: what was on it is gone.
    fn remount(&self, size: Option<&str>) {
        let out = Command::new("umount")
            .arg("-l")
            .arg(&self.root)
            .output()
            .unwrap();
        assert!(out.status.success(), "umount: {out:?}");
        if let Some(size) = size {
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(&self.root)
                .output()
                .unwrap();
            assert!(out.status.success(), "mount: {out:?}");
        }
    }

    fn outbound(&self) -> PathBuf {
        self.root.join("outbound")
    }

    fn inbound(&self) -> PathBuf {
        self.root.join("inbound")
    }

    /// The `[legacy]` keys that put both folders on this share.
    fn legacy_keys(&self) -> String {
        format!(
            "pickup_dir = \"{}\"\ndrop_dir = \"{}\"\npoll_interval = \"1s\"",
            self.outbound().display(),
            self.inbound().display()
        )
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
    }
}

/// A legacy message from one test user to another (both migrated: delivered into the Maildir).
fn export(subject: &str) -> String {
    format!(
        "Message:\r\nFrom: User, Test0 at HQ\r\nDate: 11/23/26 9:00\r\nTo: User, Test1 at HQ\r\n\
         Subject: {subject}\r\nContents:\r\nText item:\r\nbody of {subject}\r\n"
    )
}

/// Writes an export file the way a post office finishes one: a hidden name, then a rename.
fn drop_export(dir: &Path, name: &str, text: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(".{name}.part"));
    fs::write(&tmp, text).unwrap();
    fs::rename(tmp, dir.join(name)).unwrap();
}

/// The subjects of the messages in the gateway's Maildir.
fn subjects(gw: &Gateway) -> Vec<String> {
    gw.delivered()
        .iter()
        .filter_map(|d| {
            d.text()
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

/// The quarantine's `.err` files: (name, text).
fn reasons(gw: &Gateway) -> Vec<(String, String)> {
    let dir = gw.dir().join("data/legacy/quarantine");
    names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".err"))
        .map(|n| {
            let text = fs::read_to_string(dir.join(&n)).unwrap_or_default();
            (n, text)
        })
        .collect()
}

fn wait_logged(gw: &Gateway, words: &[&str]) -> String {
    wait_for(Duration::from_secs(30), || {
        gw.log()
            .lines()
            .find(|l| words.iter().all(|w| l.contains(w)))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no log line with {words:?}:\n{}", gw.log()))
}

/// The peak resident memory of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

// See: issue 11 ("the pickup folder on another filesystem stalls the legacy side").
#[test]
fn a_pickup_folder_on_another_filesystem_delivers_and_archives_every_file() {
    let Some(share) = Share::mount("64m", "pickup on a share") else {
        return;
    };
    let gw = Gateway::start_with("", &share.legacy_keys(), "", &crate::util::test_directory());
    for i in 0..3 {
        drop_export(
            &share.outbound(),
            &format!("EXP{i}.TXT"),
            export(&format!("share {i}")).as_bytes(),
        );
    }
    gw.wait_delivered(3, Duration::from_secs(60));
    let archive = gw.dir().join("data/legacy/archive");
    wait_for(Duration::from_secs(30), || {
        (names(&archive).len() == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("archive holds {:?}; log:\n{}", names(&archive), gw.log()));
    let mut got = subjects(&gw);
    got.sort();
    assert_eq!(got, ["share 0", "share 1", "share 2"]);
    assert_eq!(
        names(&share.outbound()),
        Vec::<String>::new(),
        "every file left the share's pickup folder"
    );
    for name in names(&archive) {
        let text = fs::read_to_string(archive.join(&name)).unwrap();
        assert!(text.starts_with("Message:\r\n"), "{name} archived whole");
    }
}

// See: issue 11 (files that are not export files never stop the others).
#[test]
fn links_folders_fifos_and_vanished_files_never_stop_the_others() {
    let Some(share) = Share::mount("64m", "odd entries in the pickup folder") else {
        return;
    };
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("SECRET.TXT");
    fs::write(&secret, export("never read through a link")).unwrap();
    fs::create_dir_all(share.outbound()).unwrap();
    std::os::unix::fs::symlink(&secret, share.outbound().join("LINK.TXT")).unwrap();
    fs::create_dir(share.outbound().join("FOLDER.TXT")).unwrap();
    let fifo = Command::new("mkfifo")
        .arg(share.outbound().join("FIFO.TXT"))
        .status()
        .is_ok_and(|s| s.success());
    let gw = Gateway::start_with("", &share.legacy_keys(), "", &crate::util::test_directory());
    // A file that is listed once, then removed before it stops changing.
    drop_export(
        &share.outbound(),
        "VANISH.TXT",
        export("vanished").as_bytes(),
    );
    wait_logged(&gw, &["LINK.TXT", "symbolic link (not followed)"]);
    fs::remove_file(share.outbound().join("VANISH.TXT")).unwrap();
    drop_export(&share.outbound(), "GOOD.TXT", export("good").as_bytes());
    gw.wait_delivered(1, Duration::from_secs(30));
    wait_logged(
        &gw,
        &["FOLDER.TXT", "a folder in the pickup folder; left alone"],
    );
    if fifo {
        wait_logged(&gw, &["FIFO.TXT", "not a regular file"]);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(subjects(&gw), ["good"], "only the good file was read");
    assert!(secret.exists(), "the link's target is untouched");
    assert!(
        fs::symlink_metadata(share.outbound().join("LINK.TXT"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let log = gw.log();
    assert_eq!(
        log.matches("symbolic link (not followed)").count(),
        1,
        "said once:\n{log}"
    );
}

// A review of the contract found: after the share holding the pickup folder was unmounted
// and a fresh one mounted, every poll said "cannot list the claim folder" and "vanished
// before it was claimed" of a file that was there, and nothing was picked up until restart.
#[test]
fn the_pickup_goes_on_after_its_share_is_mounted_afresh_or_unmounted() {
    let Some(share) = Share::mount("16m", "pickup share remounted") else {
        return;
    };
    // The pickup folder is the root of the mount (its claim folder inside it, `.ccgate/`).
    let keys = format!(
        "pickup_dir = \"{}\"\npoll_interval = \"1s\"",
        share.root.display()
    );
    let gw = Gateway::start_with("", &keys, "", &crate::util::test_directory());
    drop_export(&share.root, "FIRST.TXT", export("first").as_bytes());
    gw.wait_delivered(1, Duration::from_secs(60));
    wait_logged(&gw, &["claimed from the pickup folder", "FIRST.TXT"]);
    wait_logged(&gw, &["legacy file done", "file=FIRST.TXT"]);
    assert_eq!(
        names(&share.root),
        [".ccgate"],
        "claimed inside the mount, then archived"
    );

    // A fresh share in its place: nothing of the claim folder is left on it.
    share.remount(Some("16m"));
    assert_eq!(names(&share.root), Vec::<String>::new());
    drop_export(
        &share.root,
        "REMOUNT.TXT",
        export("after the remount").as_bytes(),
    );
    gw.wait_delivered(2, Duration::from_secs(60));
    wait_logged(&gw, &["claimed from the pickup folder", "REMOUNT.TXT"]);
    wait_logged(&gw, &["legacy file done", "file=REMOUNT.TXT"]);

    // The share gone: the pickup folder is the bare mount point on the parent's filesystem,
    // so the claim folder now belongs beside it. A file written there is taken too.
    share.remount(None);
    drop_export(
        &share.root,
        "UNMOUNTED.TXT",
        export("while unmounted").as_bytes(),
    );
    gw.wait_delivered(3, Duration::from_secs(60));
    wait_logged(&gw, &["claimed from the pickup folder", "UNMOUNTED.TXT"]);
    wait_logged(&gw, &["legacy file done", "file=UNMOUNTED.TXT"]);

    let archive = gw.dir().join("data/legacy/archive");
    wait_for(Duration::from_secs(30), || {
        (names(&archive).len() == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("archive holds {:?}; log:\n{}", names(&archive), gw.log()));
    let mut got = subjects(&gw);
    got.sort();
    assert_eq!(got, ["after the remount", "first", "while unmounted"]);
    let log = gw.log();
    for wrong in [
        "cannot list the claim folder",
        "vanished before it was claimed",
        "cannot claim",
    ] {
        assert!(!log.contains(wrong), "{wrong:?} logged:\n{log}");
    }
}

// See: issue 11 ("a large garbage file crashes the gateway").
#[test]
fn a_gigabyte_of_garbage_is_quarantined_in_bounded_memory_and_the_others_flow() {
    let Some(share) = Share::mount("64m", "1 GB garbage file") else {
        return;
    };
    let gw = Gateway::start_with("", &share.legacy_keys(), "", &crate::util::test_directory());
    fs::create_dir_all(share.outbound()).unwrap();
    // Sparse: a gigabyte of zero bytes without a line feed, costing no memory on the tmpfs.
    let garbage = fs::File::create(share.outbound().join("GARBAGE.TXT")).unwrap();
    garbage.set_len(1 << 30).unwrap();
    drop(garbage);
    drop_export(
        &share.outbound(),
        "GOOD.TXT",
        export("after the garbage").as_bytes(),
    );
    gw.wait_delivered(1, Duration::from_secs(120));
    let archive = gw.dir().join("data/legacy/archive");
    wait_for(Duration::from_secs(120), || {
        (names(&archive).len() == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("archive holds {:?}; log:\n{}", names(&archive), gw.log()));
    let reasons = reasons(&gw);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0]
            .1
            .starts_with("GARBAGE.TXT:1:1: expected 'Message:'"),
        "{reasons:?}"
    );
    let peak = peak_rss_kib(gw.pid());
    assert!(
        peak > 0 && peak < 256 * 1024,
        "the gateway's peak resident memory was {peak} KiB for a 1 GiB garbage file"
    );
    // And it still answers SMTP.
    let mut smtp = crate::util::RawSmtp::open(&gw.addr());
    assert_eq!(smtp.cmd("NOOP").code, 250);
}

// See: issue 11 ("a truncated export is delivered as if whole").
#[test]
fn a_truncated_export_is_quarantined_and_never_delivered_in_part() {
    let Some(share) = Share::mount("64m", "truncated export") else {
        return;
    };
    let gw = Gateway::start_with("", &share.legacy_keys(), "", &crate::util::test_directory());
    // A whole sized message, then one whose file ends inside its counted blocks.
    let whole = export("whole");
    let cut = "Message:\r\n613\r\nFrom: User, Test0 at HQ\r\nTo: User, Test1 at HQ\r\n\
               Subject: cut short\r\nContents:\r\n520\r\nText item:\r\n500\r\nthe first lines of a long body\r\n";
    drop_export(
        &share.outbound(),
        "CUT.TXT",
        format!("{whole}{cut}").as_bytes(),
    );
    gw.wait_delivered(1, Duration::from_secs(30));
    let reasons = wait_for(Duration::from_secs(30), || {
        Some(reasons(&gw)).filter(|r| !r.is_empty())
    })
    .unwrap_or_else(|| panic!("nothing quarantined; log:\n{}", gw.log()));
    assert!(
        reasons[0]
            .1
            .starts_with("CUT.TXT:10:1: the message size line says 613 bytes")
            && reasons[0].1.contains("truncated"),
        "{reasons:?}"
    );
    wait_logged(&gw, &["legacy message set aside", "CUT.TXT"]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        subjects(&gw),
        ["whole"],
        "nothing of the cut message was delivered"
    );
    // `ccgate check` says the same, with exit 1.
    let check = gw.command(&[
        "check",
        gw.dir()
            .join("data/legacy/archive")
            .join(names(&gw.dir().join("data/legacy/archive"))[0].as_str())
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&check.stderr)
            .contains(":10:1: error: the message size line says 613 bytes")
    );
}

// See: issue 11 ("two gateways watching the same share never take the same file").
#[test]
fn two_gateways_on_one_pickup_folder_take_every_file_exactly_once() {
    let Some(share) = Share::mount("64m", "two gateways on one share") else {
        return;
    };
    let a = Gateway::start_with("", &share.legacy_keys(), "", &crate::util::test_directory());
    let b = Gateway::start_with("", &share.legacy_keys(), "", &crate::util::test_directory());
    const FILES: usize = 40;
    for i in 0..FILES {
        drop_export(
            &share.outbound(),
            &format!("F{i:03}.TXT"),
            export(&format!("file {i:03}")).as_bytes(),
        );
    }
    let all = wait_for(Duration::from_secs(90), || {
        let mut got = subjects(&a);
        got.extend(subjects(&b));
        (got.len() >= FILES).then_some(got)
    })
    .unwrap_or_else(|| panic!("not all delivered; logs:\n{}\n----\n{}", a.log(), b.log()));
    std::thread::sleep(Duration::from_secs(3));
    let mut got = subjects(&a);
    got.extend(subjects(&b));
    got.sort();
    let expected: Vec<String> = (0..FILES).map(|i| format!("file {i:03}")).collect();
    assert_eq!(
        got,
        expected,
        "each file delivered exactly once ({} seen first)",
        all.len()
    );
    let archived = names(&a.dir().join("data/legacy/archive")).len()
        + names(&b.dir().join("data/legacy/archive")).len();
    assert_eq!(archived, FILES);
    assert_eq!(names(&share.outbound()), Vec::<String>::new());
}

// See: issue 11 ("a file still being written is not truncated").
#[test]
fn a_file_written_slowly_while_polled_is_read_whole_once() {
    let Some(share) = Share::mount("64m", "slow writer") else {
        return;
    };
    let gw = Gateway::start_with("", &share.legacy_keys(), "", &crate::util::test_directory());
    fs::create_dir_all(share.outbound()).unwrap();
    // A sized message written a line every 200 ms for about 4 s, polled every second.
    let body: String = (0..20)
        .map(|i| format!("line {i} of a slow export\r\n"))
        .collect();
    let body = body.trim_end_matches("\r\n").to_owned();
    let item = format!("Text item:\r\n{}\r\n{body}\r\n", body.len());
    let head = "From: User, Test0 at HQ\r\nTo: User, Test1 at HQ\r\nSubject: slow\r\nContents:\r\n";
    let contents = format!("{}\r\n{item}", item.len());
    let message = format!(
        "Message:\r\n{}\r\n{head}{contents}",
        head.len() + contents.len()
    );
    let path = share.outbound().join("SLOW.TXT");
    let mut file = fs::File::create(&path).unwrap();
    for line in message.split_inclusive("\r\n") {
        file.write_all(line.as_bytes()).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(file);
    let delivered = gw.wait_delivered(1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(gw.delivered().len(), 1);
    let text = delivered[0].text();
    assert!(
        text.contains("line 19 of a slow export"),
        "read whole:\n{text}"
    );
    assert!(reasons(&gw).is_empty(), "{:?}", reasons(&gw));
}

// See: issue 11 (a writer that pauses past the stability wait, then appends to the file it
// still holds open: the claimed file, the same inode).
#[test]
fn messages_appended_to_a_claimed_file_are_delivered_before_it_is_archived() {
    let Some(share) = Share::mount("64m", "append after the claim") else {
        return;
    };
    // A long poll: the append surely comes between the pass that reads the file and the
    // next one (which would archive it, had it not changed).
    let keys = share
        .legacy_keys()
        .replace("poll_interval = \"1s\"", "poll_interval = \"4s\"");
    let gw = Gateway::start_with("", &keys, "", &crate::util::test_directory());
    fs::create_dir_all(share.outbound()).unwrap();
    let mut writer = fs::File::create(share.outbound().join("APPEND.TXT")).unwrap();
    writer
        .write_all(export("before the pause").as_bytes())
        .unwrap();
    writer.flush().unwrap();
    gw.wait_delivered(1, Duration::from_secs(60));
    wait_logged(&gw, &["claimed from the pickup folder", "APPEND.TXT"]);
    assert_eq!(names(&share.outbound()), Vec::<String>::new(), "claimed");
    // The writer goes on through its open handle: into the claimed file.
    writer
        .write_all(export("after the pause").as_bytes())
        .unwrap();
    drop(writer);
    gw.wait_delivered(2, Duration::from_secs(60));
    wait_logged(&gw, &["changed after it was read", "APPEND.TXT"]);
    let archive = gw.dir().join("data/legacy/archive");
    let archived = wait_for(Duration::from_secs(60), || {
        names(&archive).into_iter().next()
    })
    .unwrap_or_else(|| panic!("never archived; log:\n{}", gw.log()));
    let text = fs::read_to_string(archive.join(&archived)).unwrap();
    assert_eq!(
        text.matches("Message:\r\n").count(),
        2,
        "archived whole: {text}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut got = subjects(&gw);
    got.sort();
    assert_eq!(got, ["after the pause", "before the pause"], "each once");
    assert!(reasons(&gw).is_empty(), "{:?}", reasons(&gw));
    assert!(gw.log().contains("already taken in; not queued again"));
}

// A review of the contract found `import_command` given `./data/legacy/inbound/X.CCM` when
// the config path was relative: a wrapper that changes folder first could not find the file.
#[test]
fn import_command_gets_an_absolute_path_from_a_relative_config() {
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("import.log");
    let script = scratch.path().join("import.sh");
    // A wrapper as sites write them: it changes folder, then reads the file it was given.
    fs::write(
        &script,
        format!(
            "#!/bin/sh\ncd / || exit 1\necho \"$1\" >> '{log}'\n\
             case \"$1\" in /*) ;; *) exit 1 ;; esac\n\
             grep -q '^Message:' \"$1\" || exit 1\nexit 0\n",
            log = log.display()
        ),
    )
    .unwrap();
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
    let directory = format!(
        "{}John Smith,\"Smith, John\",HQ,SMTP:john@{},,legacy\n",
        crate::util::test_directory(),
        crate::util::LEGACY_DOMAIN
    );
    let keys = format!(
        "import_command = \"{}\"\nimport_timeout = \"10s\"\npoll_interval = \"1s\"",
        script.display()
    );
    let mut gw = Gateway::start_with("", &keys, "", &directory);
    // Again with the config named relative to the folder the gateway runs in (`ccgate.toml`),
    // so the data folders are relative paths too.
    gw.signal("TERM");
    assert!(
        gw.wait_exit(Duration::from_secs(30)).is_some(),
        "{}",
        gw.log()
    );
    gw.config = PathBuf::from("ccgate.toml");
    gw.spawn();
    let mut smtp = crate::util::RawSmtp::open(&gw.addr());
    for (line, code) in [
        ("EHLO client.test".to_owned(), 250),
        ("MAIL FROM:<alice@example.org>".to_owned(), 250),
        (
            format!("RCPT TO:<john@{}>", crate::util::LEGACY_DOMAIN),
            250,
        ),
        ("DATA".to_owned(), 354),
    ] {
        let reply = smtp.cmd(&line);
        assert_eq!(reply.code, code, "{line}: {reply:?}");
    }
    smtp.send(b"Subject: absolute\r\n\r\nfor the import command\r\n.\r\n")
        .unwrap();
    assert_eq!(smtp.reply().unwrap().code, 250);
    let imported = gw.dir().join("data/legacy/imported");
    wait_for(Duration::from_secs(60), || {
        (!names(&imported).is_empty()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "not imported; the command got {:?}; log:\n{}",
            fs::read_to_string(&log).unwrap_or_default(),
            gw.log()
        )
    });
    let given = fs::read_to_string(&log).unwrap();
    let given = Path::new(given.trim());
    assert!(given.is_absolute(), "{given:?}");
    let drop_dir = fs::canonicalize(gw.dir().join("data/legacy/inbound")).unwrap();
    assert_eq!(given.parent(), Some(drop_dir.as_path()), "{given:?}");
}

// See: issue 11 ("a 1 GB file of zero bytes makes `ccgate check` grow to 2 GB and abort").
#[test]
fn check_reads_a_gigabyte_sparse_file_under_a_256_mib_address_space_limit() {
    let Some(prlimit) = crate::util::require_tool("prlimit", "check under a memory limit") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("HUGE.TXT");
    // A gigabyte of zero bytes without a line feed (sparse: no disk), then one good message.
    let mut file = fs::File::create(&path).unwrap();
    file.set_len(1 << 30).unwrap();
    use std::io::Seek as _;
    file.seek(std::io::SeekFrom::End(0)).unwrap();
    file.write_all(b"\r\nMessage:\r\nFrom: A at HQ\r\nTo: B at HQ\r\nContents:\r\nText item:\r\nafter a gigabyte\r\n")
        .unwrap();
    drop(file);
    let out = Command::new(prlimit)
        .arg(format!("--as={}", 256u64 << 20))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_ccgate"))
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    crate::util::assert_no_crash(&out);
    let (stdout, stderr) = crate::util::texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("HUGE.TXT:1:1: error: expected 'Message:'"),
        "{stderr}"
    );
    assert!(
        stdout.contains("HUGE.TXT:2: ok: from \"A at HQ\""),
        "reading resumed at the next 'Message:' line: {stdout}"
    );
    assert!(stderr.contains("checked 2 messages: 1 invalid"), "{stderr}");
}

// See: issue 11 ("nothing is lost or taken twice"). A SIGKILL after the spool took a picked-up
// message and before the ledger recorded it: the ledger write is lost (here: the ledger file
// emptied while the gateway is down), and the same export arrives again (the claimed file
// re-read after a crash reads the same messages). The key in the spool record completes the
// ledger at start-up, so the message is not queued twice.
#[test]
fn a_message_queued_before_a_crash_lost_its_ledger_entry_is_not_taken_twice() {
    // Test1 is being migrated: mail to them is held in the cutover lane, so it stays queued.
    let directory: String = crate::util::test_directory()
        .lines()
        .map(|line| match line.strip_suffix(",migrated") {
            Some(rest) if line.contains("\"User, Test1\"") => format!("{rest},migrating\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    assert!(directory.contains(",migrating\n"), "{directory}");
    let mut gw = Gateway::start_with("", "poll_interval = \"1s\"", "", &directory);
    let pickup = gw.dir().join("data/legacy/outbound");
    drop_export(&pickup, "HELD.TXT", export("held").as_bytes());
    wait_logged(&gw, &["legacy file done", "HELD.TXT"]);
    assert_eq!(gw.queue_list().len(), 1, "held for the cutover");
    gw.kill9();
    let ledger = gw.dir().join("data/ledger.log");
    assert!(
        !fs::read(&ledger).unwrap().is_empty(),
        "the key was recorded"
    );
    fs::write(&ledger, b"").unwrap();
    drop_export(&pickup, "AGAIN.TXT", export("held").as_bytes());
    gw.spawn();
    wait_logged(
        &gw,
        &["ledger: recorded messages the spool took before a crash"],
    );
    wait_logged(&gw, &["already taken in; not queued again"]);
    wait_logged(&gw, &["legacy file done", "AGAIN.TXT"]);
    assert_eq!(gw.queue_list().len(), 1, "queued once:\n{}", gw.log());
}
