//! The LDAP directory source against a real slapd started here on a loopback port
//! (docs/testing.md), with a small schema of our own for `proxyAddresses`, `targetAddress` and
//! the ccgate attributes: the same users as the CSV fixture must give the same routing
//! decisions, and problems must name the entry's DN. Skipped, with a notice, only when slapd is
//! not installed (`apt-get install slapd`; CI installs it).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::route::{run_with, setup};
use crate::util::texts;

const SCHEMA: &str = "\
attributetype ( 1.3.6.1.4.1.99999.1.1 NAME 'proxyAddresses' DESC 'Exchange-style typed addresses'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.99999.1.2 NAME 'targetAddress'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.3 NAME 'ccgateMigrationState'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.4 NAME 'ccgateLegacyName'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
attributetype ( 1.3.6.1.4.1.99999.1.5 NAME 'ccgatePostOffice'
  EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.2.1 NAME 'ccgateUser' SUP top AUXILIARY
  MAY ( proxyAddresses $ targetAddress $ ccgateMigrationState $ ccgateLegacyName $ ccgatePostOffice ) )
";

/// The users of crates/router/tests/data/directory.csv, the LDAP way: Bob's primary SMTP
/// address only in `mail`, Dave's legacy name only in his primary `CCMAIL:` proxy.
const ENTRIES: &str = "\
dn: dc=example,dc=test
objectClass: dcObject
objectClass: organization
dc: example
o: Example Test

dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: uid=jdoe,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: ccgateUser
uid: jdoe
cn: Jane Doe
sn: Doe
displayName: Jane Doe
ccgateLegacyName: Doe, Jane
ccgatePostOffice: HQ
proxyAddresses: SMTP:jane.doe@legacy.example.com
proxyAddresses: CCMAIL:Doe, Jane at HQ
ccgateMigrationState: legacy

dn: uid=bsmith,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: ccgateUser
uid: bsmith
cn: Bob Smith
sn: Smith
displayName: Bob Smith
mail: bob.smith@modern.example.com
ccgateLegacyName: Smith, Bob
ccgatePostOffice: HQ
proxyAddresses: smtp:bob.smith@legacy.example.com
proxyAddresses: CCMAIL:Smith, Bob at EXSITE
proxyAddresses: ccmail:Smith, Bob at HQ
proxyAddresses: X500:/o=Example/ou=Site1/cn=Recipients/cn=bsmith
targetAddress: SMTP:bob.smith@modern.example.com
ccgateMigrationState: migrated

dn: uid=cjones,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: ccgateUser
uid: cjones
cn: Carol Jones
sn: Jones
displayName: Carol Jones
ccgateLegacyName: Jones, Carol
ccgatePostOffice: BRANCH
proxyAddresses: SMTP:carol.jones@legacy.example.com
proxyAddresses: MIGRATE:CCMAIL:cjones at BRANCH
targetAddress: SMTP:carol.jones@modern.example.com
ccgateMigrationState: migrating

dn: uid=dbrown,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: ccgateUser
uid: dbrown
cn: Dave Brown
sn: Brown
displayName: Dave \"DB\" Brown
proxyAddresses: CCMAIL:Brown, Dave at HQ
ccgateMigrationState: legacy

dn: uid=emoved,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: ccgateUser
uid: emoved
cn: Erin Moved
sn: Moved
displayName: Erin Moved
ccgateLegacyName: Moved, Erin
ccgatePostOffice: HQ
proxyAddresses: smtp:erin@legacy.example.com
targetAddress: erin.moved@modern.example.com
ccgateMigrationState: migrated

dn: ou=broken,dc=example,dc=test
objectClass: organizationalUnit
ou: broken

dn: uid=jdoe2,ou=broken,dc=example,dc=test
objectClass: inetOrgPerson
objectClass: ccgateUser
uid: jdoe2
cn: Jane Doe Two
sn: Doe
ccgateLegacyName: DOE, JANE
ccgatePostOffice: HQ2
proxyAddresses: smtp:jdoe2@legacy.example.com
ccgateMigrationState: retired
";

/// A slapd of our own, stopped on drop.
struct Slapd {
    dir: tempfile::TempDir,
    port: u16,
}

impl Slapd {
    fn start() -> Option<Self> {
        let slapd = [
            "/usr/sbin/slapd",
            "/usr/local/sbin/slapd",
            "/usr/local/libexec/slapd",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())?;
        let slapadd = slapd.with_file_name("slapadd");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).unwrap();
        std::fs::write(d.join("ccgate.schema"), SCHEMA).unwrap();
        std::fs::write(d.join("entries.ldif"), ENTRIES).unwrap();
        let modulepath = [
            "/usr/lib/ldap",
            "/usr/lib/openldap",
            "/usr/local/libexec/openldap",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/usr/lib/ldap");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include {schema}\n\
             modulepath {modulepath}\n\
             moduleload back_mdb\n\
             pidfile {d}/slapd.pid\n\
             argsfile {d}/slapd.args\n\
             database mdb\n\
             maxsize 104857600\n\
             suffix \"dc=example,dc=test\"\n\
             rootdn \"cn=admin,dc=example,dc=test\"\n\
             rootpw secret\n\
             directory {d}/db\n",
            schema = d.join("ccgate.schema").display(),
            d = d.display(),
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let added = Command::new(&slapadd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-l")
            .arg(d.join("entries.ldif"))
            .output()
            .unwrap();
        assert!(
            added.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Command::new(&slapd)
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .output()
            .unwrap();
        assert!(
            started.status.success(),
            "slapd: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let server = Self { dir, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "slapd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    /// A ccgate config reading this server under `base`.
    fn config(&self, base: &str) -> (tempfile::TempDir, PathBuf) {
        let (dir, config) = setup(None, "");
        let password = dir.path().join("password");
        std::fs::write(&password, "secret\n").unwrap();
        let extra = format!(
            "ldap_base = {base:?}\nldap_bind_dn = \"cn=admin,dc=example,dc=test\"\nldap_password_file = {:?}\n",
            password.display().to_string()
        );
        let text = std::fs::read_to_string(&config).unwrap();
        let csv_line = text
            .lines()
            .find(|l| l.starts_with("source = "))
            .unwrap()
            .to_owned();
        let text = text.replace(
            &csv_line,
            &format!("source = \"ldap://127.0.0.1:{}\"\n{extra}", self.port),
        );
        std::fs::write(&config, text).unwrap();
        (dir, config)
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let pidfile = self.dir.path().join("slapd.pid");
        let Ok(pid) = std::fs::read_to_string(&pidfile) else {
            return;
        };
        let pid = pid.trim().to_owned();
        let _ = Command::new("kill").arg(&pid).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The decision fields that must not depend on the source (the entry's position and DN do).
fn decisions(config: &Path, from: Option<&str>, recipients: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["route", "--json"];
    if let Some(from) = from {
        args.extend(["--from", from]);
    }
    args.extend_from_slice(recipients);
    let out = run_with(config, &args);
    let (stdout, stderr) = texts(&out);
    assert_eq!(
        stdout.lines().count(),
        recipients.len(),
        "{stdout}\n{stderr}"
    );
    stdout
        .lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            let entry = value["entry"].take();
            value["entry"] = serde_json::json!({
                "legacy_name": entry["legacy_name"],
                "post_office": entry["post_office"],
                "display_name": entry["display_name"],
                "state": entry["state"],
                "target_address": entry["target_address"],
            });
            value
        })
        .collect()
}

#[test]
fn ldap_and_csv_give_the_same_decisions() {
    let Some(slapd) = Slapd::start() else {
        crate::util::skip(
            "slapd is not installed: the LDAP directory test (apt-get install slapd)",
        );
        return;
    };
    let (_csv_dir, csv) = setup(None, "");
    let (_ldap_dir, ldap) = slapd.config("ou=people,dc=example,dc=test");

    let check = run_with(&ldap, &["directory", "check"]);
    assert_eq!(check.status.code(), Some(0), "{:?}", texts(&check));
    assert!(
        texts(&check)
            .0
            .contains("ok: 5 entries (2 legacy, 1 migrating, 2 migrated)"),
        "{:?}",
        texts(&check)
    );

    let recipients = [
        "jane.doe@legacy.example.com",
        "Doe, Jane at HQ",
        "doe, jane",
        "Smith, Bob at HQ",
        "bob.smith@legacy.example.com",
        "BOB.SMITH@modern.example.com",
        "[X500:/o=Example/ou=Site1/cn=Recipients/cn=bsmith]",
        "carol.jones@legacy.example.com",
        "cjones at BRANCH",
        "Brown, Dave at HQ",
        "Moved, Erin",
        "erin.moved@modern.example.com",
        "nobody@legacy.example.com",
        "someone@outside.test",
        "someone@outside.test at SMTPGW",
        "Nobody, Known at HQ",
    ];
    for from in [
        None,
        Some("ann@outside.test"),
        Some("Brown, Dave at HQ"),
        Some("Smith, Bob"),
    ] {
        let from_csv = decisions(&csv, from, &recipients);
        let from_ldap = decisions(&ldap, from, &recipients);
        for ((a, b), recipient) in from_csv.iter().zip(&from_ldap).zip(recipients) {
            assert_eq!(a, b, "{recipient} from {from:?}");
        }
    }

    // The legacy update files are the same too.
    let out_csv = _csv_dir.path().join("out");
    let out_ldap = _ldap_dir.path().join("out");
    run_with(
        &csv,
        &["directory", "export-legacy", out_csv.to_str().unwrap()],
    );
    run_with(
        &ldap,
        &["directory", "export-legacy", out_ldap.to_str().unwrap()],
    );
    for name in ["Ccmdel.imp", "Ccmdir.imp"] {
        assert_eq!(
            std::fs::read(out_csv.join(name)).unwrap(),
            std::fs::read(out_ldap.join(name)).unwrap(),
            "{name}"
        );
    }

    // A broken entry elsewhere in the tree: problems name its DN; exit 1.
    let (_dir, whole) = slapd.config("dc=example,dc=test");
    let out = run_with(&whole, &["directory", "check"]);
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("uid=jdoe2,ou=broken,dc=example,dc=test: state \"retired\" is not legacy"),
        "{stderr}"
    );

    // Attribute names come from [directory.ldap_attributes]: the display name from `cn`.
    let (_mapped_dir, mapped) = slapd.config("ou=people,dc=example,dc=test");
    let mut text = std::fs::read_to_string(&mapped).unwrap();
    text.push_str("\n[directory.ldap_attributes]\ndisplay_name = \"cn\"\n");
    std::fs::write(&mapped, text).unwrap();
    let dave = ["Brown, Dave at HQ"];
    assert_eq!(
        decisions(&ldap, None, &dave)[0]["entry"]["display_name"],
        "Dave \"DB\" Brown"
    );
    assert_eq!(
        decisions(&mapped, None, &dave)[0]["entry"]["display_name"],
        "Dave Brown"
    );

    // A server that is not there: exit 2 with the URL.
    drop(slapd);
    let out = run_with(&ldap, &["directory", "check"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", texts(&out));
    assert!(
        texts(&out).1.contains("ldap://127.0.0.1:"),
        "{:?}",
        texts(&out)
    );
}

// See: issue 14 (cutover in an LDAP directory: a modify with the configured bind).
#[test]
fn set_state_modifies_the_ldap_entry_with_the_configured_bind() {
    let Some(slapd) = Slapd::start() else {
        crate::util::skip(
            "slapd is not installed: the LDAP set-state test (apt-get install slapd)",
        );
        return;
    };
    let (_dir, ldap) = slapd.config("ou=people,dc=example,dc=test");
    let state = |address: &str| decisions(&ldap, None, &[address])[0]["state"].clone();
    assert_eq!(state("jane.doe@legacy.example.com"), "legacy");
    let out = run_with(
        &ldap,
        &[
            "directory",
            "set-state",
            "migrating",
            "Doe, Jane",
            "nobody@nowhere.test",
        ],
    );
    let (stdout, stderr) = texts(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unknown name is a problem: {stderr}"
    );
    assert_eq!(stdout, "Doe, Jane: legacy -> migrating\n");
    assert_eq!(
        state("jane.doe@legacy.example.com"),
        "migrating",
        "read back from slapd"
    );
    // Jane has no target address: `migrated` would not load, so nothing is changed.
    let refused = run_with(&ldap, &["directory", "set-state", "migrated", "Doe, Jane"]);
    assert_eq!(refused.status.code(), Some(2), "{:?}", texts(&refused));
    assert!(
        texts(&refused).1.contains("would not load"),
        "{:?}",
        texts(&refused)
    );
    assert_eq!(state("jane.doe@legacy.example.com"), "migrating");
}
