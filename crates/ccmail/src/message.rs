//! The decoded, owned form of one legacy message: Unicode text, typed headers, items in order.
//!
//! This is the value the reader produces and the writer consumes; `parse(write(m)) == m` holds
//! for every message the writer accepts unchanged (see the crate README for what it normalises).

use crate::LegacyDateTime;

/// One message of an Import/Export file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Message {
    /// Header lines in file order, unknown keywords included.
    pub headers: Vec<Header>,
    /// Items after `Contents:`, in file order.
    pub items: Vec<Item>,
}

/// One header line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Header {
    /// `From:` — a legacy address, as written.
    From(String),
    /// `Date:` — parsed in the configured order.
    Date(LegacyDateTime),
    /// `To:` — one recipient per line.
    To(String),
    /// `Cc:` — one recipient per line.
    Cc(String),
    /// `Bcc:` — one recipient per line.
    Bcc(String),
    /// `Subject:`.
    Subject(String),
    /// Any other keyword (`Priority:`, `RRT:`, `Folder:` …) and a `Date:` that did not parse,
    /// kept with the keyword as written.
    Other {
        /// The keyword without the colon.
        keyword: String,
        /// The value after `": "`.
        value: String,
    },
}

impl Header {
    /// The canonical keyword (as the writer capitalises it).
    pub fn keyword(&self) -> &str {
        match self {
            Self::From(_) => "From",
            Self::Date(_) => "Date",
            Self::To(_) => "To",
            Self::Cc(_) => "Cc",
            Self::Bcc(_) => "Bcc",
            Self::Subject(_) => "Subject",
            Self::Other { keyword, .. } => keyword,
        }
    }

    /// True for `To:`, `Cc:` and `Bcc:`.
    pub fn is_recipient(&self) -> bool {
        matches!(self, Self::To(_) | Self::Cc(_) | Self::Bcc(_))
    }

    /// The address text of `From:`, `To:`, `Cc:` or `Bcc:`.
    pub fn address(&self) -> Option<&str> {
        match self {
            Self::From(a) | Self::To(a) | Self::Cc(a) | Self::Bcc(a) => Some(a),
            _ => None,
        }
    }
}

/// The kind word before `item:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ItemKind {
    /// `Text item:` — body text in the post office's code page.
    Text,
    /// `File item:` — an attachment; the title is its name.
    File,
    /// `Fax item:`.
    Fax,
    /// `Graphics item:`.
    Graphics,
    /// `Sound item:`.
    Sound,
    /// `Message item:` — a forwarded message.
    Message,
    /// Any other kind word, kept as written.
    Other(String),
}

impl ItemKind {
    /// The kind word as the writer spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Text => "Text",
            Self::File => "File",
            Self::Fax => "Fax",
            Self::Graphics => "Graphics",
            Self::Sound => "Sound",
            Self::Message => "Message",
            Self::Other(word) => word,
        }
    }

    /// The kind for a kind word, case-insensitively.
    pub fn from_word(word: &str) -> Self {
        const KNOWN: [(&str, ItemKind); 6] = [
            ("text", ItemKind::Text),
            ("file", ItemKind::File),
            ("fax", ItemKind::Fax),
            ("graphics", ItemKind::Graphics),
            ("sound", ItemKind::Sound),
            ("message", ItemKind::Message),
        ];
        KNOWN
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(word))
            .map_or_else(|| Self::Other(word.to_owned()), |(_, kind)| kind.clone())
    }
}

/// One item of a message's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Item {
    /// What kind of item.
    pub kind: ItemKind,
    /// The title after `item:`; for file items the file name, without the trailing date.
    pub title: String,
    /// The date and time a file item's title carried (`Abc.wk4 5/6/97 3:10PM`); the writer never
    /// writes it back (8.01 clients showed it instead of the name, KB Q195203).
    pub stamp: Option<LegacyDateTime>,
    /// The item's data.
    pub body: ItemBody,
}

/// An item's data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum ItemBody {
    /// Text items, decoded from the code page. Lines end in CR LF as in the file.
    Text(String),
    /// Every other kind, as the bytes in the file.
    Bytes(Vec<u8>),
}

impl Message {
    /// The `From:` value, if any.
    pub fn from(&self) -> Option<&str> {
        self.headers.iter().find_map(|h| match h {
            Header::From(a) => Some(a.as_str()),
            _ => None,
        })
    }

    /// The `Subject:` value, if any.
    pub fn subject(&self) -> Option<&str> {
        self.headers.iter().find_map(|h| match h {
            Header::Subject(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// The `Date:` value, if one parsed.
    pub fn date(&self) -> Option<LegacyDateTime> {
        self.headers.iter().find_map(|h| match h {
            Header::Date(d) => Some(*d),
            _ => None,
        })
    }

    /// Every `To:`, `Cc:` and `Bcc:` value, in order.
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(|h| h.is_recipient())
            .filter_map(Header::address)
    }
}
