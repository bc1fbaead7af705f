//! The one place that reads the system clock: everything else takes `now`, so tests and
//! recovery can run at any time they choose.

use std::time::SystemTime;

/// The current wall-clock time.
pub fn now() -> SystemTime {
    SystemTime::now()
}
