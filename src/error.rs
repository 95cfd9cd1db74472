//! The one error type of the crate: every failure on user input ends here, with a message that
//! names the file or the cause.

use std::path::PathBuf;

/// Everything that can go wrong on user input or during a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A dataset cannot be used as it is.
    #[error("unusable data: {0}")]
    Data(String),
    /// A file or folder could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The loss or a gradient became NaN or infinite; the last good state is kept.
    #[error("diverged at iteration {iteration}: {cause}; the last good state (iteration {last_good}) is kept (a smaller outer_lr or an earlier decay, decay_iterations, may avoid it)")]
    Diverged {
        /// The iteration whose step produced a non-finite value.
        iteration: usize,
        /// The last iteration whose state is kept.
        last_good: usize,
        /// Which value was not finite.
        cause: String,
    },
    /// A result archive could not be read.
    #[error("bad result archive: {0}")]
    Archive(String),
    /// A saved session cannot be read or does not fit the data it is resumed on.
    #[error("cannot resume the session: {0}")]
    Session(String),
    /// Values handed between workers do not fit the run (the page's helper workers).
    #[error("a worker was handed data that do not fit this run: {0}")]
    Worker(String),
    /// The backend failed to hand data back (for instance a lost GPU device).
    #[error("backend error: {0}")]
    Backend(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::Io { path: path.into(), message: err.to_string() }
    }
}

/// Result with the crate's error.
pub type Result<T> = std::result::Result<T, Error>;
