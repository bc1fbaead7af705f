//! End-to-end tests: the `ccgate` binary driven through its public interface
//! (docs/cli.md, docs/configuration.md), with real files and real peers.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod check;
mod console;
mod convert;
mod directory;
mod diskfull;
mod docs;
mod ldap;
mod legacy_faults;
mod progress;
mod relay;
mod replay;
mod route;
mod smtp;
mod util;
