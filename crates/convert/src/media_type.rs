//! Media types of attachments, guessed from the file name's extension (legacy → MIME) and
//! extensions for unnamed parts (MIME → legacy).

/// Extension (lower case) → media type. Anything else is `application/octet-stream`.
pub const EXTENSION_TYPES: &[(&str, &str)] = &[
    ("txt", "text/plain"),
    ("asc", "text/plain"),
    ("log", "text/plain"),
    ("csv", "text/csv"),
    ("htm", "text/html"),
    ("html", "text/html"),
    ("xml", "text/xml"),
    ("rtf", "application/rtf"),
    ("pdf", "application/pdf"),
    ("ps", "application/postscript"),
    ("doc", "application/msword"),
    ("dot", "application/msword"),
    ("xls", "application/vnd.ms-excel"),
    ("ppt", "application/vnd.ms-powerpoint"),
    ("mdb", "application/x-msaccess"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("wk1", "application/vnd.lotus-1-2-3"),
    ("wk3", "application/vnd.lotus-1-2-3"),
    ("wk4", "application/vnd.lotus-1-2-3"),
    ("123", "application/vnd.lotus-1-2-3"),
    ("lwp", "application/vnd.lotus-wordpro"),
    ("wpd", "application/wordperfect"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("gif", "image/gif"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("png", "image/png"),
    ("bmp", "image/bmp"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("pcx", "image/x-pcx"),
    ("wav", "audio/wav"),
    ("mid", "audio/midi"),
    ("mp3", "audio/mpeg"),
    ("avi", "video/x-msvideo"),
    ("eml", "message/rfc822"),
];

/// The default media type.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The media type for a file name, by its extension, case-insensitively.
pub fn for_file_name(name: &str) -> &'static str {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return OCTET_STREAM;
    };
    EXTENSION_TYPES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        // A legacy file item is bytes, never a parsed message: keep message/rfc822 for real
        // forwarded items only.
        .map_or(OCTET_STREAM, |(_, t)| {
            if *t == "message/rfc822" {
                OCTET_STREAM
            } else {
                t
            }
        })
}

/// The extension (upper case, as DOS wrote them) for an unnamed part of a media type.
pub(crate) fn extension_for(media_type: &str) -> &'static str {
    match media_type.to_ascii_lowercase().as_str() {
        "text/plain" => "TXT",
        "text/html" => "HTM",
        "text/csv" => "CSV",
        "text/calendar" => "ICS",
        "image/gif" => "GIF",
        "image/jpeg" => "JPG",
        "image/png" => "PNG",
        "application/pdf" => "PDF",
        "message/rfc822" => "EML",
        _ => "DAT",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        let cases = [
            ("REPORT.WK4", "application/vnd.lotus-1-2-3"),
            ("notes.txt", "text/plain"),
            ("photo.JPG", "image/jpeg"),
            ("fwd.eml", OCTET_STREAM),
            ("README", OCTET_STREAM),
            ("archive.tar.gz", "application/gzip"),
            ("odd.", OCTET_STREAM),
        ];
        for (name, expected) in cases {
            assert_eq!(for_file_name(name), expected, "{name}");
        }
        assert_eq!(extension_for("Text/HTML"), "HTM");
        assert_eq!(extension_for("application/x-unknown"), "DAT");
    }
}
