//! The one place that reads the system clock (style.md §4): everything else takes `now`.

use std::time::SystemTime;

/// The current wall-clock time.
pub fn now() -> SystemTime {
    SystemTime::now()
}
