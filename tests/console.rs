//! The migration console (docs/console.md) against the real `ccgate run`: in headless Chromium
//! (Selenium; screenshots, an axe-core accessibility pass, 1280 px and phone width), over raw
//! HTTP for the safety rules, and the CLI side (`directory set-state`, `trace`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{
    Gateway, LEGACY_DOMAIN, MODERN_DOMAIN, RawSmtp, python_json, require_tool, skip,
    test_directory, texts, wait_for,
};

const TOKEN: &str = "console-test-token-0123456789";

/// The test users plus Pat Lee, being migrated (their mail is held), and John Smith, on the
/// legacy side. A comment line, to see that a cutover keeps it.
fn directory() -> String {
    format!(
        "{}# the pilot group\n\
         Pat Lee,\"Lee, Pat\",HQ,SMTP:pat.lee@{LEGACY_DOMAIN},SMTP:pat.lee@{MODERN_DOMAIN},migrating\n\
         John Smith,\"Smith, John\",HQ,SMTP:john.smith@{LEGACY_DOMAIN},,legacy\n",
        test_directory()
    )
}

fn start() -> Gateway {
    // The token file must outlive the start only; the gateway read it.
    start_with_token().0
}

/// The gateway and the folder of its token file (for a test that starts it again).
fn start_with_token() -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("admin.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let gw = Gateway::start_with(
        "",
        "poll_interval = \"1s\"",
        &format!("token_file = {:?}", token.display().to_string()),
        &directory(),
    );
    (gw, dir)
}

/// The admin address from the banner (`ccgate: admin       http://ADDR/metrics ...`).
fn admin(gw: &Gateway) -> String {
    wait_for(Duration::from_secs(30), || {
        // The banner of the latest run (a restarted gateway listens on a new port).
        let log = gw.log();
        let last = log
            .rsplit("---- next run ----")
            .next()
            .unwrap_or("")
            .to_owned();
        last.lines()
            .find_map(|l| l.strip_prefix("ccgate: admin"))
            .and_then(|rest| rest.split_whitespace().next())
            .map(|url| {
                url.trim_start_matches("http://")
                    .trim_end_matches("/metrics")
                    .to_owned()
            })
    })
    .expect("the banner names the admin listener")
}

/// Sends one message by SMTP; answers the queue id.
fn send(gw: &Gateway, to: &str, message_id: &str) -> String {
    let mut c = RawSmtp::open(&gw.addr());
    assert_eq!(c.cmd("EHLO client.test").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<someone@outside.test>").code, 250);
    assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250, "RCPT {to}");
    assert_eq!(c.cmd("DATA").code, 354);
    let reply = c.cmd(&format!(
        "From: someone@outside.test\r\nTo: {to}\r\nSubject: console test\r\nMessage-ID: <{message_id}>\r\n\r\nHello.\r\n."
    ));
    let _ = c.cmd("QUIT");
    reply
        .queued_id()
        .unwrap_or_else(|| panic!("not queued: {reply:?}"))
}

/// One HTTP request; (status, head, body). The console closes each connection after its answer.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// The CSV the gateway reads.
fn csv(gw: &Gateway) -> String {
    std::fs::read_to_string(gw.dir().join("directory.csv")).unwrap()
}

fn held_until_cutover(gw: &Gateway) -> String {
    let pat = format!("pat.lee@{LEGACY_DOMAIN}");
    let id = send(gw, &pat, &crate::util::token("held"));
    wait_for(Duration::from_secs(30), || {
        gw.queue_list()
            .iter()
            .any(|m| m["queue_id"] == id.as_str() && m["queue_name"] == "held")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{id} was not held; log:\n{}", gw.log()));
    id
}

#[test]
fn console_pages_in_a_real_browser_show_numbers_find_people_and_cut_over() {
    let test = "console_pages_in_a_real_browser_show_numbers_find_people_and_cut_over";
    let (Some(_), Some(_), Some(python)) = (
        require_tool("chromium", test),
        require_tool("chromedriver", test),
        require_tool("python3", test),
    ) else {
        return;
    };
    // Debian's selenium is importable by /usr/bin/python3 (another python3 may come first).
    let python = [PathBuf::from("/usr/bin/python3"), python]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import selenium"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(python) = python else {
        skip(&format!("python3-selenium not installed ({test})"));
        return;
    };
    let gw = start();
    let addr = admin(&gw);
    // Mail flows: one delivered to the modern side, one held for Pat Lee.
    let delivered = send(
        &gw,
        &format!("alice@{MODERN_DOMAIN}"),
        "flow-1@outside.test",
    );
    gw.wait_delivered_id(&delivered, Duration::from_secs(30));
    let held = held_until_cutover(&gw);
    // A broken legacy export file is set aside by the pickup.
    let pickup = gw.dir().join("data/legacy/outbound");
    std::fs::write(
        pickup.join("BROKEN.CCM"),
        "Message:\r\nFrom: Doe, Jane at HQ\r\nTo: Smith, John at HQ\r\nSubject: broken\r\nContents: 999\r\nhello\r\n",
    )
    .unwrap();
    let quarantine = gw.dir().join("data/legacy/quarantine");
    wait_for(Duration::from_secs(30), || {
        std::fs::read_dir(&quarantine).ok()?.next().map(|_| ())
    })
    .unwrap_or_else(|| panic!("the broken file was not set aside; log:\n{}", gw.log()));

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/browser.py");
    let axe = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console/axe.min.js");
    let out = Command::new(&python)
        .arg(&script)
        .args([
            &format!("http://{addr}"),
            TOKEN,
            shots.to_str().unwrap(),
            axe.to_str().unwrap(),
            &held,
        ])
        .output()
        .unwrap();
    let seen = python_json(&out);
    let o = &seen["overview"];
    assert!(o["accepted_smtp_hour"].as_u64().unwrap() >= 2, "{o}");
    assert!(o["delivered_modern_hour"].as_u64().unwrap() >= 1, "{o}");
    assert_eq!(o["held_cutover"], 1, "{o}");
    assert_eq!(o["quarantined_files"], 1, "{o}");
    assert_eq!(o["people_migrating"], 1, "{o}");
    assert!(
        seen["search"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "Pat Lee"),
        "{}",
        seen["search"]
    );
    let person = seen["person"].as_str().unwrap();
    assert!(
        person.contains("migrating") && person.contains("hold"),
        "{person}"
    );
    assert!(
        person.contains(&held),
        "the person page lists the held message: {person}"
    );
    let trace: Vec<&str> = seen["trace"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        trace.contains(&"accepted") && trace.contains(&"held"),
        "{trace:?}"
    );
    assert!(seen["queue_held"].as_str().unwrap().contains(&held));
    assert!(seen["quarantine"].as_str().unwrap().contains("BROKEN.CCM"));
    assert!(
        seen["quarantine_file"]
            .as_str()
            .unwrap()
            .contains("BROKEN.CCM:6:1"),
        "{}",
        seen["quarantine_file"]
    );
    // Without the token nothing happens.
    assert_eq!(seen["no_token_status"], 403, "{}", seen["no_token_body"]);
    assert_eq!(
        seen["refusal_logged"].as_array().unwrap().len(),
        1,
        "{}",
        seen["refusal_logged"]
    );
    assert!(
        seen["browser_no_token"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{}",
        seen["browser_no_token"]
    );
    // Signed in, with the cookie as the safety rules say.
    assert!(
        seen["signed_in"]
            .as_str()
            .unwrap()
            .contains("helpdesk-test"),
        "{}",
        seen["signed_in"]
    );
    let cookie = &seen["cookie"][0];
    assert_eq!(cookie["name"], "ccgate_session");
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    // The cutover: the result per person, the CSV rewritten (comment and order kept), the held
    // mail released into the Maildir.
    let cutover = seen["cutover"].as_str().unwrap();
    assert!(cutover.contains("migrating -> migrated"), "{cutover}");
    assert!(cutover.contains("1 held messages released"), "{cutover}");
    let text = csv(&gw);
    assert!(
        text.contains("# the pilot group\nPat Lee,") && text.contains(",migrated\nJohn Smith,"),
        "{text}"
    );
    let released = gw.wait_delivered_id(&held, Duration::from_secs(30));
    assert!(
        released
            .text()
            .contains(&format!("pat.lee@{MODERN_DOMAIN}"))
            || !released.text().is_empty()
    );
    let log = gw.log();
    assert!(
        log.lines()
            .any(|l| l.contains("console cutover") && l.contains("who=helpdesk-test@127.0.0.1")),
        "the cutover is logged with who did it:\n{log}"
    );
    // A cutover for later, listed, then cancelled: it never runs.
    let scheduled = seen["scheduled"].as_str().unwrap();
    assert!(
        scheduled.contains("1 people move to migrating at 2099-01-01 09:30"),
        "{scheduled}"
    );
    let list = seen["scheduled_list"].as_str().unwrap();
    assert!(
        list.contains("2099-01-01 09:30")
            && list.contains("Smith, John")
            && list.contains("Cancel"),
        "{list}"
    );
    let cancelled = seen["cancelled"].as_str().unwrap();
    assert!(cancelled.contains("is cancelled"), "{cancelled}");
    assert_eq!(seen["scheduled_after_cancel"], 0);
    assert!(csv(&gw).contains(&format!("john.smith@{LEGACY_DOMAIN},,legacy")));
    // Accessibility, width, screenshots.
    for (page, violations) in seen["axe"].as_object().unwrap() {
        assert!(
            violations.as_array().unwrap().is_empty(),
            "axe on {page}: {violations}"
        );
    }
    for (page, errors) in seen["browser_errors"].as_object().unwrap() {
        assert!(
            errors.as_array().unwrap().is_empty(),
            "browser errors on {page}: {errors}"
        );
    }
    for (page, overflow) in seen["overflow"].as_object().unwrap() {
        assert_eq!(overflow, false, "{page} is wider than the window");
    }
    for name in [
        "overview-1280",
        "person-1280",
        "trace-1280",
        "queue-1280",
        "quarantine-1280",
        "cutover-result-1280",
        "cutover-scheduled-1280",
        "overview-phone",
        "cutover-phone",
    ] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 5_000,
            "{name}.png"
        );
    }
    eprintln!("screenshots: {}", shots.display());
}

#[test]
fn actions_need_the_token_and_a_session_form_needs_its_csrf_token() {
    let gw = start();
    let addr = admin(&gw);
    let held = held_until_cutover(&gw);
    let hold = format!("action=hold&id={held}");
    // Reading is open on loopback; the old endpoints answer as before.
    assert_eq!(http(&addr, "GET", "/", &[], "").0, 200);
    assert_eq!(http(&addr, "GET", "/healthz", &[], "").2, "ok\n");
    assert_eq!(http(&addr, "GET", "/readyz", &[], "").0, 200);
    assert!(
        http(&addr, "GET", "/metrics", &[], "")
            .2
            .contains("ccgate_queue_messages")
    );
    assert!(
        http(&addr, "GET", "/queue/summary", &[], "")
            .2
            .contains("\"columns\"")
    );
    assert_eq!(http(&addr, "GET", "/nope", &[], "").0, 404);
    // No token, a wrong token: refused.
    assert_eq!(http(&addr, "POST", "/queue/action", &[], &hold).0, 403);
    assert_eq!(
        http(
            &addr,
            "POST",
            "/queue/action",
            &["Authorization: Bearer wrong-token-0123456789"],
            &hold
        )
        .0,
        403
    );
    assert_eq!(
        http(&addr, "POST", "/login", &[], "name=x&token=wrong").0,
        403
    );
    // Sign in: an HttpOnly, SameSite=Strict cookie.
    let (status, head, _) = http(
        &addr,
        "POST",
        "/login",
        &[],
        &format!("name=ops&token={TOKEN}"),
    );
    assert_eq!(status, 303, "{head}");
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .unwrap_or_else(|| panic!("no cookie: {head}"))
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = format!("Cookie: {}", cookie.split(';').next().unwrap());
    // The session's forms carry the CSRF token; a POST without it, or from another site, is refused.
    let (_, _, page) = http(&addr, "GET", "/queue", &[&session], "");
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field in the signed-in form")
        .to_owned();
    assert_eq!(
        http(&addr, "POST", "/queue/action", &[&session], &hold).0,
        403
    );
    assert_eq!(
        http(
            &addr,
            "POST",
            "/queue/action",
            &[&session],
            &format!("{hold}&csrf=bad")
        )
        .0,
        403
    );
    let evil = [session.as_str(), "Origin: http://evil.example"];
    assert_eq!(
        http(
            &addr,
            "POST",
            "/queue/action",
            &evil,
            &format!("{hold}&csrf={csrf}")
        )
        .0,
        403
    );
    let same_site = format!("Origin: http://{addr}");
    let ok = [session.as_str(), same_site.as_str()];
    let (status, _, body) = http(
        &addr,
        "POST",
        "/queue/action",
        &ok,
        &format!("{hold}&csrf={csrf}"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&held), "{body}");
    // The bearer token works for scripts.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let (status, _, body) = http(
        &addr,
        "POST",
        "/queue/action",
        &[&bearer],
        &format!("action=release&id={held}"),
    );
    assert_eq!(status, 200, "{body}");
    let log = gw.log();
    assert!(
        log.contains("who=ops@127.0.0.1") && log.contains("action=hold"),
        "{log}"
    );
    assert!(
        log.contains("who=bearer@127.0.0.1") && log.contains("action=release"),
        "{log}"
    );
    // A legacy message set aside by the pickup is released after a fix and delivered.
    let pickup = gw.dir().join("data/legacy/outbound");
    std::fs::write(
        pickup.join("BROKEN2.CCM"),
        "Message:\r\nFrom: Smith, John at HQ\r\nTo: User, Test0 at HQ\r\nSubject: fixed later\r\nContents: 999\r\nhello\r\n",
    )
    .unwrap();
    let quarantine = gw.dir().join("data/legacy/quarantine");
    let name = wait_for(Duration::from_secs(30), || {
        std::fs::read_dir(&quarantine)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("BROKEN2.CCM") && !n.ends_with(".err"))
    })
    .unwrap_or_else(|| panic!("not set aside; log:\n{}", gw.log()));
    let fixed = "Message:\nFrom: Smith, John at HQ\nTo: User, Test0 at HQ\nSubject: fixed later\nContents:\nText item:\nhello\n";
    let form = format!(
        "action=release&name={}&text={}",
        name.replace('.', "%2E"),
        fixed
            .replace('\n', "%0A")
            .replace(' ', "+")
            .replace(',', "%2C")
            .replace(':', "%3A")
    );
    assert_eq!(http(&addr, "POST", "/quarantine/action", &[], &form).0, 403);
    let (status, _, body) = http(&addr, "POST", "/quarantine/action", &[&bearer], &form);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("released into"), "{body}");
    assert!(
        !quarantine.join(&name).exists(),
        "the quarantined copy is gone"
    );
    wait_for(Duration::from_secs(30), || {
        gw.delivered()
            .iter()
            .any(|d| d.text().contains("Subject: fixed later"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the fixed message was not delivered; log:\n{}", gw.log()));
    // A cutover at a time: carried out then, and logged.
    let when = form_time(now_secs() + 3);
    let (status, _, body) = http(
        &addr,
        "POST",
        "/cutover",
        &[&bearer],
        &format!("names=Smith%2C+John&state=migrating&at={when}"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("scheduled"), "{body}");
    assert!(
        csv(&gw).contains(&format!("john.smith@{LEGACY_DOMAIN},,legacy")),
        "not yet"
    );
    wait_for(Duration::from_secs(30), || {
        csv(&gw)
            .contains(&format!("john.smith@{LEGACY_DOMAIN},,migrating"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the scheduled cutover did not happen; log:\n{}", gw.log()));
    wait_for(Duration::from_secs(10), || {
        gw.log()
            .contains("console cutover (scheduled)")
            .then_some(())
    })
    .expect("the scheduled cutover is logged");
}

/// `at` (Unix seconds) as the form's UTC time.
fn form_time(at: u64) -> String {
    let date = Command::new("date")
        .args(["-u", "-d", &format!("@{at}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    texts(&date).0.trim().to_owned()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_scheduled_cutover_survives_a_kill_and_a_cancelled_one_never_runs() {
    let (mut gw, _token) = start_with_token();
    let addr = admin(&gw);
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let file = gw.dir().join("data/cutovers.json");
    let schedule = |names: &str, state: &str, at: u64| {
        let (status, _, body) = http(
            &addr,
            "POST",
            "/cutover",
            &[&bearer],
            &format!("names={names}&state={state}&at={}", form_time(at)),
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Cutover scheduled"), "{body}");
    };
    // Pat Lee (migrating, mail held) is to be migrated in 20 seconds; John Smith to be moved
    // in an hour, which is then cancelled.
    let held = held_until_cutover(&gw);
    let soon = now_secs() + 20;
    schedule("Lee%2C+Pat", "migrated", soon);
    schedule("Smith%2C+John", "migrating", now_secs() + 3600);
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(
        stored.contains("Lee, Pat") && stored.contains("Smith, John"),
        "{stored}"
    );
    let (status, _, page) = http(&addr, "GET", "/cutover", &[&bearer], "");
    assert_eq!(status, 200);
    assert_eq!(
        page.matches("action=\"/cutover/cancel\"").count(),
        2,
        "{page}"
    );
    // Cancel John Smith's (the second entry); cancelling it again finds nothing.
    let id = serde_json::from_str::<serde_json::Value>(&stored).unwrap()["cutovers"][1]["id"]
        .as_u64()
        .unwrap();
    let (status, _, body) = http(
        &addr,
        "POST",
        "/cutover/cancel",
        &[&bearer],
        &format!("id={id}"),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Cutover cancelled"), "{body}");
    let (status, _, _) = http(
        &addr,
        "POST",
        "/cutover/cancel",
        &[&bearer],
        &format!("id={id}"),
    );
    assert_eq!(status, 404);
    assert_eq!(
        http(&addr, "POST", "/cutover/cancel", &[], &format!("id={id}")).0,
        403,
        "cancelling needs the token like every action"
    );
    let stored = std::fs::read_to_string(&file).unwrap();
    assert!(
        stored.contains("Lee, Pat") && !stored.contains("Smith, John"),
        "{stored}"
    );
    // The gateway dies before the time and is down when it passes.
    gw.kill9();
    assert!(
        csv(&gw)
            .lines()
            .any(|l| l.starts_with("Pat Lee,") && l.ends_with(",migrating")),
        "not run before its time"
    );
    wait_for(Duration::from_secs(30), || {
        (now_secs() > soon).then_some(())
    });
    gw.spawn();
    // Back up, it carries out the missed cutover at once: Pat Lee migrated, the held message
    // delivered, the log says how late, and the list on disk is empty.
    wait_for(Duration::from_secs(60), || {
        csv(&gw)
            .lines()
            .any(|l| l.starts_with("Pat Lee,") && l.ends_with(",migrated"))
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the missed cutover did not run after the restart; log:\n{}",
            gw.log()
        )
    });
    gw.wait_delivered_id(&held, Duration::from_secs(60));
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("console cutover (scheduled)"))
        .unwrap_or_else(|| panic!("not logged:\n{log}"));
    assert!(line.contains("late_secs="), "{line}");
    wait_for(Duration::from_secs(10), || {
        let stored = std::fs::read_to_string(&file).ok()?;
        (!stored.contains("Lee, Pat")).then_some(())
    })
    .expect("the cutover that ran is removed from the list");
    assert!(
        csv(&gw).contains(&format!("john.smith@{LEGACY_DOMAIN},,legacy")),
        "the cancelled cutover never ran"
    );
}

// Mail held for a migrating user is never bounced: not when the hold outlasts
// `[queue] max_lifetime` (the clock starts again when the user is cut over), and not stranded
// when an administrator releases it by hand (it is routed again).
#[test]
fn held_mail_outlives_max_lifetime_and_a_release_by_hand_does_not_strand_it() {
    let gw = Gateway::start_with(
        "",
        "poll_interval = \"1s\"",
        "\n[queue]\nmax_lifetime = \"3s\"",
        &directory(),
    );
    let held = held_until_cutover(&gw);
    let since = now_secs();
    // Released by hand while Pat is still migrating: routed again, so held again.
    let out = gw.command(&["queue", "release", &held]);
    assert!(out.status.success(), "{:?}", texts(&out));
    wait_for(Duration::from_secs(30), || {
        gw.queue_list()
            .iter()
            .any(|m| m["queue_id"] == held.as_str() && m["queue_name"] == "held")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("not held again after the release; log:\n{}", gw.log()));
    // Held longer than the lifetime, then cut over: delivered, not bounced.
    wait_for(Duration::from_secs(30), || {
        (now_secs() > since + 4).then_some(())
    });
    let out = gw.command(&["directory", "set-state", "migrated", "Lee, Pat"]);
    assert!(out.status.success(), "{:?}", texts(&out));
    gw.signal("HUP");
    gw.wait_delivered_id(&held, Duration::from_secs(30));
    let log = gw.log();
    assert!(!log.contains("expired"), "{log}");
    assert!(
        !gw.delivered().iter().any(|d| d.text().contains("expired")),
        "no bounce"
    );
}

#[test]
fn a_listener_beyond_loopback_needs_a_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ccgate.toml");
    std::fs::write(
        &config,
        "data_dir = \"data\"\n[smtp]\nlisten = [\"127.0.0.1:0\"]\n[admin]\nlisten = \"0.0.0.0:0\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("directory.csv"), test_directory()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ccgate"))
        .args(["--config", config.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("admin.listen") && stderr.contains("token_file"),
        "{stderr}"
    );
}

#[test]
fn set_state_on_the_command_line_keeps_the_csv_and_a_reload_releases_held_mail() {
    let gw = start();
    let held = held_until_cutover(&gw);
    let before = csv(&gw);
    let out = gw.command(&[
        "directory",
        "set-state",
        "migrated",
        "Lee, Pat",
        "nobody@nowhere.test",
    ]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unknown name is a problem: {stderr}"
    );
    assert_eq!(stdout, "Lee, Pat: migrating -> migrated\n");
    assert!(stderr.contains("nobody@nowhere.test"), "{stderr}");
    let after = csv(&gw);
    let expected = before.replace(
        &format!("SMTP:pat.lee@{MODERN_DOMAIN},migrating\n"),
        &format!("SMTP:pat.lee@{MODERN_DOMAIN},migrated\n"),
    );
    assert_eq!(after, expected, "only Pat's state changed");
    let again = gw.command(&[
        "directory",
        "set-state",
        "migrated",
        &format!("pat.lee@{LEGACY_DOMAIN}"),
    ]);
    assert_eq!(
        texts(&again).0,
        format!("pat.lee@{LEGACY_DOMAIN}: already migrated\n")
    );
    // The running gateway takes it at the reload, and Pat's held mail arrives.
    gw.signal("HUP");
    gw.wait_delivered_id(&held, Duration::from_secs(30));
    // The trace tells the story, on the command line too.
    let story = wait_for(Duration::from_secs(30), || {
        let out = gw.command(&["trace", &held]);
        let text = texts(&out).0;
        text.contains(" delivered ").then_some(text)
    })
    .unwrap_or_else(|| panic!("no delivery in the trace of {held}; log:\n{}", gw.log()));
    let kinds: Vec<&str> = story
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(kinds, ["delivered", "held", "accepted"], "{story}");
    let json = gw.command(&[
        "trace",
        "--json",
        "--since",
        "1h",
        &format!("pat.lee@{LEGACY_DOMAIN}"),
    ]);
    let first: serde_json::Value =
        serde_json::from_str(texts(&json).0.lines().last().unwrap()).unwrap();
    assert_eq!(first["event"], "accepted");
    assert_eq!(first["queue_id"], held.as_str());
    let bad = gw.command(&["trace", "--since", "yesterday-ish"]);
    assert_eq!(bad.status.code(), Some(2));
}
