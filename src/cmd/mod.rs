//! One module per command of the public interface.

pub mod check;
pub mod queue;
pub mod run;
