//! One module per command of the public interface.

pub mod check;
pub mod convert;
pub mod directory;
pub mod init;
pub mod queue;
pub mod replay;
pub mod route;
pub mod run;
pub mod trace;
