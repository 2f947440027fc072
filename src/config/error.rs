//! Errors from reading a cluster file.

use std::path::PathBuf;

/// Why a cluster file could not be used. The message is meant for the user
/// as is: it names the file (and for content errors the line and column)
/// and says what to change.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read cluster file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file was read but its content is wrong; `line` and `column` are
    /// 1-based, the column counted in characters.
    #[error("{origin}:{line}:{column}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
}

impl ConfigError {
    /// A content error at byte `offset` of `text`.
    pub(super) fn at(origin: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_col(text, offset);
        ConfigError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    /// Keeps the toml crate's one-line explanation and its position, but not
    /// its multi-line source snippet, which is too loud for a CLI.
    pub(super) fn from_toml(origin: &str, text: &str, error: &toml::de::Error) -> Self {
        // Every error the schema can produce carries a span; an error about
        // the document as a whole is honestly placed at its start.
        let offset = error.span().map_or(0, |span| span.start);
        Self::at(origin, text, offset, error.message())
    }
}

/// 1-based line and column of byte `offset` in `text`. Works on bytes so
/// that an offset that is out of range or inside a character cannot panic;
/// the column counts characters by skipping UTF-8 continuation bytes.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before[line_start..]
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (line, column)
}
