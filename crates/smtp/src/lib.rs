//! The SMTP server protocol without I/O.
#![forbid(unsafe_code)]
