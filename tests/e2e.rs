//! End-to-end tests: the `ccgate` binary driven through its public interface
//! (shared/docs/interface.md), with real files.

// Test helpers outside #[test] fns may panic: clippy.toml allows it only inside them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod check;
mod convert;
mod directory;
mod ldap;
mod legacy_faults;
mod progress;
mod relay;
mod replay;
mod route;
mod smtp;
mod util;
