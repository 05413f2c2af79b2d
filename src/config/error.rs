//! What a rejected configuration reports: each problem at its line and column.

use std::fmt;

/// One problem in the file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Why a configuration was not accepted.
#[derive(Debug)]
pub enum Error {
    /// The file could not be read.
    Read {
        file: String,
        source: std::io::Error,
    },
    /// The file was read and has these problems, in file order.
    Invalid {
        file: String,
        diagnostics: Vec<Diagnostic>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read { file, source } => {
                write!(f, "{file}: cannot read the configuration: {source}")
            }
            Error::Invalid { file, diagnostics } => {
                for (i, d) in diagnostics.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{file}:{}:{}: {}", d.line, d.column, d.message)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } => Some(source),
            Error::Invalid { .. } => None,
        }
    }
}

/// A parse error from the YAML reader, located at its line and column.
pub(super) fn syntax_diagnostic(e: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = e
        .location()
        .map_or((1, 1), |l| (l.line().max(1), l.column().max(1)));
    let rendered = e.without_snippet().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    // The crate writes the location into the message; ours comes first instead.
    let message = first.strip_prefix("error: ").unwrap_or(first);
    let message = message
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line "))
        .map_or(message, |(_, msg)| msg);
    let message = message
        .strip_suffix(&format!(" at line {line}, column {column}"))
        .unwrap_or(message)
        .to_owned();
    Diagnostic {
        line,
        column,
        message,
    }
}
