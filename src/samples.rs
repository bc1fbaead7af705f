//! What `ccgate init` writes, and the directory `ccgate run` creates when the embedded
//! defaults find none.

/// A sample directory: one user per state (docs/directory.md).
pub const DIRECTORY_CSV: &str = "\
# ccgate directory: one row per person (the columns: docs/directory.md in ccgate's sources).
# state: legacy (mail goes to the legacy post office), migrating (mail is held until the
# entry becomes migrated), migrated (mail goes to target_address, also mail sent to the old
# legacy name). Reload with SIGHUP after editing; `ccgate directory check` validates.
display_name,legacy_name,post_office,proxy_addresses,target_address,state
Jane Doe,\"Doe, Jane\",HQ,\"SMTP:jane.doe@legacy.example.com;CCMAIL:Doe, Jane at HQ\",SMTP:jane.doe@modern.example.com,migrated
John Smith,\"Smith, John\",HQ,\"SMTP:john.smith@legacy.example.com;CCMAIL:Smith, John at HQ\",,legacy
Pat Lee,\"Lee, Pat\",HQ,\"SMTP:pat.lee@legacy.example.com;CCMAIL:Lee, Pat at HQ\",SMTP:pat.lee@modern.example.com,migrating
";

/// A commented configuration with every key at its default.
pub const CONFIG_TOML: &str = r#"# ccgate configuration (every key: docs/configuration.md). Every key is optional; the
# values below are the defaults. Unknown keys are an error. `ccgate config` prints what is in
# effect. Relative paths: data_dir, directory.source and the TLS files are relative to this
# file; pickup_dir, drop_dir and a relative maildir: next hop are relative to data_dir.

data_dir = "ccgate-data"            # spool, archives, state; created if missing

[smtp]
listen = ["127.0.0.1:2525"]
hostname = "ccgate.localdomain"     # used in the greeting and Received: headers
max_message_size = "25MB"
max_recipients = 1000
max_connections = 1000
# max_line_length = 0               # longest message line; 0 = any length (as Postfix); 1000 = RFC 5321 strict
# max_connections_per_client = 50   # sessions at once from one address (Postfix's anvil); 0 = no limit
# max_connection_rate = 0           # new sessions per minute from one address; 0 = no limit
# client_limit_exceptions = ["127.0.0.0/8", "::1"]   # addresses the two limits above spare
# memory_budget = "512MB"           # message text held in memory by all sessions; past it 452 4.3.1
# tls_cert = "cert.pem"             # STARTTLS is offered when both are set
# tls_key = "key.pem"

[legacy]
post_office = "HQ"                  # the connected legacy post office
gateway_po = "SMTPGW"               # the gateway's post-office entry in the legacy directory
domain = "legacy.example.com"       # SMTP domain of legacy users
pickup_dir = "legacy/outbound"      # export files written by the post office, read by ccgate
drop_dir = "legacy/inbound"         # import files written by ccgate for the post office
dialect = "ie8"                     # what the post office's Import accepts: ie5 or ie8
date_format = "us"                  # us (M/D/YY), eu (D/M/YY), jp (YY/M/D)
codepage = "ibm437"                 # ibm437 or ibm850
import_command = ""                 # optional program run once per import file (absolute path appended):
                                    # exit 0 consumed, 4 post office locked (retry),
                                    # 5 undeliverable (bounce), anything else or a hang: retry
import_timeout = "60s"              # a hung import_command is killed (its whole process group)
poll_interval = "15s"
import_batch = 50                   # at most this many messages per import file; a file refused
                                    # for good (exit 5) is retried one message per file, so
                                    # import_command must be all-or-nothing per file
unknown_recipients = "bounce"       # legacy recipients the directory lacks: bounce (a non-delivery
                                    # report to the legacy sender) or hold (for the administrator)
post_offices = ["HQ"]               # legacy post offices reachable from SMTP for names outside the
                                    # directory (default: post_office); list every post office
                                    # whose users mail out through the gateway
smtp_bulletin_boards = []           # bulletin boards reachable from SMTP (default: none)
reply_tag_lifetime = "30d"          # how long the reply address of a legacy sender outside the
                                    # directory stays valid (whole days, 1d-500d); the tag key in
                                    # data_dir/reply-tag.keys is rotated this often (+2 days)

[modern]
domain = "modern.example.com"       # SMTP domain of migrated mailboxes
next_hop = "maildir:modern"         # or "smtp://host:port"
# For an smtp:// next hop (Postfix's names in brackets):
concurrency = 8                     # connections at once (destination concurrency)
connect_timeout = "30s"             # connect and greeting (smtp_connect_timeout)
command_timeout = "5m"              # each command's reply (smtp_helo/mail/rcpt_timeout)
data_timeout = "10m"                # the message and its final reply (smtp_data_done_timeout)
tls = "may"                         # none, may (STARTTLS if offered, any certificate), encrypt
                                    # (STARTTLS required) or verify (required, certificate checked
                                    # against tls_ca_file or the system's trust store)
# tls_ca_file = "ca.pem"            # with tls = "verify": the CA certificates to trust (PEM)

[directory]
source = "ccgate-data/directory.csv"   # or "ldap://host:port" with ldap_base, ldap_bind_dn,
                                       # ldap_password_file, ldap_filter
# reload_interval = "5m"               # besides SIGHUP
# [directory.ldap_attributes]          # LDAP only: the attribute holding each field (defaults)
# mail = "mail"
# proxy_addresses = "proxyAddresses"
# target_address = "targetAddress"
# display_name = "displayName"
# state = "ccgateMigrationState"
# legacy_name = "ccgateLegacyName"
# post_office = "ccgatePostOffice"

[migration]
cutover = "hold"                    # mail for users in state migrating: hold or legacy
                                    # (SIGHUP applies a change, held mail included)

[queue]
retry = ["1m", "5m", "15m", "1h", "4h"]   # then the last value repeats, with jitter
max_lifetime = "5d"                 # then bounce
quarantine_after = 5                # crashes/timeouts of one message before it is set aside
min_free = "auto"                   # refuse new mail (452 4.3.1) below this much free space;
                                    # auto: 1.5 x max_message_size, at most 10% of the disk

[admin]
listen = "127.0.0.1:8025"           # HTTP: the console at /, /metrics, /healthz, /readyz, /queue/summary
# token_file = "admin.token"        # first line: a secret of 16+ characters; needed for console actions
                                    # (hold, release, cutover ...) and to listen beyond loopback
# trace_size = "64MB"               # the message trace kept in data_dir/trace (0: off)
"#;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_sample_config_is_valid_and_says_the_defaults() {
        let from_file =
            crate::config::Config::parse(CONFIG_TOML, Path::new("ccgate.toml")).unwrap();
        let embedded = crate::config::Config::load(None).unwrap();
        let strip = |t: String| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            strip(from_file.effective_toml()),
            strip(embedded.effective_toml())
        );
    }

    #[test]
    fn the_sample_directory_is_valid() {
        let directory = ccgate_router::Directory::from_csv(DIRECTORY_CSV.as_bytes()).unwrap();
        assert_eq!(directory.len(), 3);
    }
}
