//! Legacy addresses (placeholder until the parser lands).

use crate::Dialect;

/// A parsed legacy address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyAddress {
    /// `Name at PO`.
    Name {
        /// The name.
        name: String,
        /// The post office.
        po: Option<String>,
    },
}

/// How to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Dialect.
    pub dialect: Dialect,
    /// Gateway PO.
    pub gateway_po: String,
}

/// Why an address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address")]
pub struct AddressError;

/// Parses an address.
///
/// # Errors
/// Always, for now.
pub fn parse_address(_input: &str) -> Result<LegacyAddress, AddressError> {
    Err(AddressError)
}
