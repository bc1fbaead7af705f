//! The reference in `docs/` says what the binary does: every configuration key the config types
//! accept is in the key table of `docs/configuration.md` and every key there is accepted; every
//! command `ccgate --help` lists has its section in `docs/cli.md`.

use std::collections::BTreeSet;
use std::path::Path;

use crate::util::{ccgate, texts};

fn doc(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The keys the config types accept in `section` (`""` for the top level), read from the
/// binary's own refusal of an unknown key: "unknown field `x`, expected one of `a`, `b`".
fn accepted_keys(section: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ccgate.toml");
    let header = if section.is_empty() {
        String::new()
    } else {
        format!("[{section}]\n")
    };
    std::fs::write(&file, format!("{header}zz_not_a_key = 1\n")).unwrap();
    let out = ccgate()
        .args(["--config", file.to_str().unwrap(), "config"])
        .output()
        .unwrap();
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let expected = stderr
        .split_once("expected ")
        .unwrap_or_else(|| panic!("no list of keys in: {stderr}"))
        .1;
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every `section.key` the binary accepts, nested tables included.
fn all_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut pending = vec![String::new()];
    while let Some(section) = pending.pop() {
        for key in accepted_keys(&section) {
            let full = if section.is_empty() {
                key
            } else {
                format!("{section}.{key}")
            };
            // A section is a key whose value is a table: it has keys of its own.
            if is_table(&full) {
                pending.push(full.clone());
                if section.is_empty() {
                    continue; // top-level sections are headings, not keys
                }
            }
            keys.insert(full);
        }
    }
    keys
}

/// Whether `[key]` is a table the config reads (an unknown key inside it is refused by name).
fn is_table(key: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ccgate.toml");
    std::fs::write(&file, format!("[{key}]\nzz_not_a_key = 1\n")).unwrap();
    let out = ccgate()
        .args(["--config", file.to_str().unwrap(), "config"])
        .output()
        .unwrap();
    texts(&out).1.contains("unknown field `zz_not_a_key`")
}

/// The keys in the first column of the key table: rows that start with "| `".
fn documented_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .collect()
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let accepted = all_keys();
    assert!(accepted.contains("smtp.listen"), "{accepted:?}");
    assert!(
        accepted.contains("directory.ldap_attributes.mail"),
        "{accepted:?}"
    );
    let documented = documented_keys(&doc("configuration.md"));
    let missing: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        missing.is_empty(),
        "keys the binary accepts but docs/configuration.md lacks: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys docs/configuration.md names but the binary refuses: {unknown:?}"
    );
}

/// The command names under "Commands:" in `ccgate [SUB] --help`, without `help`.
fn commands(args: &[&str]) -> Vec<String> {
    let out = ccgate().args(args).arg("--help").output().unwrap();
    let (stdout, _) = texts(&out);
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_command_has_its_section_in_the_cli_reference() {
    let text = doc("cli.md");
    let mut all = Vec::new();
    for top in commands(&[]) {
        let subs = commands(&[top.as_str()]);
        if subs.is_empty() {
            all.push(top);
        } else {
            all.extend(subs.into_iter().map(|s| format!("{top} {s}")));
        }
    }
    assert!(all.len() > 10, "{all:?}");
    for command in all {
        assert!(
            text.contains(&format!("## `ccgate {command}")),
            "docs/cli.md has no section for `ccgate {command}`"
        );
    }
}

/// The keys a SIGHUP applies at once (`LIVE_KEYS` in src/cmd/run.rs, and every `directory.*`
/// key) are the ones docs/configuration.md marks `live`; every other key says `restart`.
#[test]
fn the_sighup_column_matches_what_a_reload_applies() {
    // The list the gateway applies, read from its one home (`LIVE_KEYS` in src/cmd/run.rs).
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cmd/run.rs"))
            .unwrap();
    let start = source
        .find("pub const LIVE_KEYS")
        .expect("LIVE_KEYS in run.rs");
    let list = &source[start..];
    let list = &list[list.find("= [").unwrap()..list.find("];").unwrap()];
    let live: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
    assert!(live.contains(&"migration.cutover"), "{live:?}");
    let text = doc("configuration.md");
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let key = cells[0].trim_start_matches("| `").trim_end_matches('`');
        let want = if key.starts_with("directory.") || live.contains(&key) {
            "live"
        } else {
            "restart"
        };
        assert_eq!(cells[2], want, "docs/configuration.md, key {key}: {line}");
    }
}
