//! Posted form fields (repeated names allowed: the queue's checkboxes).

use axum::body::Bytes;

/// The fields of an `application/x-www-form-urlencoded` body, in order.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

/// Largest form body read (a CSV list of people fits).
pub const MAX_FORM: usize = 1 << 20;

impl Fields {
    /// Parses a body.
    pub fn parse(body: &Bytes) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields() {
        let f = Fields::parse(&Bytes::from_static(b"id=A&id=B&action=hold&csrf=x%2By"));
        assert_eq!(f.all("id"), ["A", "B"]);
        assert_eq!(f.get("action"), Some("hold"));
        assert_eq!(f.get("csrf"), Some("x+y"));
        assert_eq!(f.get("nope"), None);
    }
}
