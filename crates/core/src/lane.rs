//! Lanes: the queue destinations, each served by one delivery agent.
//!
//! A lane's name is public: it is what the spool stores for each recipient, what `ccgate queue
//! list` prints under "destination", the `lane=` of log lines and the label of the delivery
//! metrics. [`Lane::as_str`] is the one mapping from a lane to its name, and [`FromStr`] the one
//! mapping back.

use std::fmt;
use std::str::FromStr;

use crate::CoreError;

/// A queue destination. The spool keeps names, not this type, so that a spool holding a name
/// this version does not know (or an empty one: "route it later") still loads: compare such a
/// name with a lane by `==`, or parse it with [`str::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// The modern side: the next hop (`[modern] next_hop`, a Maildir or an SMTP server);
    /// outside addresses go there too.
    Modern,
    /// The legacy post office: import files in the drop folder.
    Legacy,
    /// Recipients of users being migrated, held until their cutover releases them.
    Cutover,
    /// Accepted recipients the directory no longer knows, held for the administrator.
    Unroutable,
    /// Legacy recipients nobody has: failed at once with 5.1.1, so the sender is told.
    Unknown,
    /// Bounces and reports that must not be sent: failed at once with the reason.
    Suppressed,
}

impl Lane {
    /// Every lane, in the order above.
    pub const ALL: [Lane; 6] = [
        Lane::Modern,
        Lane::Legacy,
        Lane::Cutover,
        Lane::Unroutable,
        Lane::Unknown,
        Lane::Suppressed,
    ];

    /// The lane's name, as stored, listed, logged and labelled.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Lane::Modern => "modern",
            Lane::Legacy => "legacy",
            Lane::Cutover => "cutover",
            Lane::Unroutable => "unroutable",
            Lane::Unknown => "unknown",
            Lane::Suppressed => "suppressed",
        }
    }
}

impl fmt::Display for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: widths and alignment work as for the name itself.
        f.pad(self.as_str())
    }
}

impl FromStr for Lane {
    type Err = CoreError;

    /// The lane of a name, exactly as [`Lane::as_str`] writes it (names are case-sensitive,
    /// as the spool stores them).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Lane::ALL
            .into_iter()
            .find(|lane| lane.as_str() == s)
            .ok_or_else(|| CoreError::UnknownLane {
                input: s.to_owned(),
            })
    }
}

impl AsRef<str> for Lane {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<Lane> for String {
    fn from(lane: Lane) -> Self {
        lane.as_str().to_owned()
    }
}

impl PartialEq<str> for Lane {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Lane {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Lane {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Lane> for str {
    fn eq(&self, other: &Lane) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Lane> for &str {
    fn eq(&self, other: &Lane) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Lane> for String {
    fn eq(&self, other: &Lane) -> bool {
        self == other.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are public (spool, `queue list`, logs, metrics): they never change.
    #[test]
    fn names_are_the_public_ones() {
        let names: Vec<&str> = Lane::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(
            names,
            [
                "modern",
                "legacy",
                "cutover",
                "unroutable",
                "unknown",
                "suppressed"
            ]
        );
    }

    #[test]
    fn display_parse_and_string_agree() {
        for lane in Lane::ALL {
            assert_eq!(lane.to_string(), lane.as_str());
            assert_eq!(String::from(lane), lane.as_str());
            assert_eq!(lane.as_str().parse::<Lane>(), Ok(lane));
            assert_eq!(format!("{lane:>12}"), format!("{:>12}", lane.as_str()));
        }
    }

    #[test]
    fn other_names_are_refused_with_the_name() {
        for name in [
            "",
            "Modern",
            "LEGACY",
            " modern",
            "modern ",
            "elsewhere",
            "smtp",
        ] {
            let err = name.parse::<Lane>().unwrap_err();
            assert_eq!(
                err,
                CoreError::UnknownLane {
                    input: name.to_owned()
                }
            );
            assert!(err.to_string().contains("modern, legacy, cutover"), "{err}");
        }
    }

    #[test]
    fn compares_with_stored_names() {
        let stored = String::from("cutover");
        assert!(stored == Lane::Cutover);
        assert!(Lane::Cutover == stored);
        assert!(Lane::Cutover == "cutover");
        assert!("cutover" == Lane::Cutover);
        assert!(*"cutover" == Lane::Cutover);
        assert!(stored != Lane::Unroutable);
        assert!(String::new() != Lane::Modern);
    }
}
