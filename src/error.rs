//! Error classification shared by every stage.
//!
//! Each module has its own `thiserror` enum with context fields. What the main loop needs to know
//! about any of them is one thing: what to do next. [`Classify::class`] answers that.

/// What the caller should do with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Transient: the same operation may succeed if tried again after a backoff
    /// (timeouts, HTTP 5xx, rate limits, a broker that is briefly unreachable).
    Retry,
    /// The current unit of work must be abandoned: abort the open Kafka transaction, drop what
    /// was staged for it and redo it from the last committed checkpoint.
    Abort,
    /// Retrying cannot help (bad credentials, a fenced producer, an incompatible schema,
    /// a misconfigured topic): stop the process with a clear message and a non-zero exit code.
    Fatal,
}

impl ErrorClass {
    /// A short lowercase label, for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Retry => "retry",
            ErrorClass::Abort => "abort",
            ErrorClass::Fatal => "fatal",
        }
    }
}

/// Implemented by every module error type.
pub trait Classify {
    /// What the caller should do with this error.
    fn class(&self) -> ErrorClass;
}

/// Cut `s` to at most `max` bytes on a char boundary, marking the cut, for quoting response
/// bodies and records in error messages without flooding logs.
pub fn excerpt(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} more bytes]", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        let s = "探马探马";
        let e = excerpt(s, 4);
        assert!(e.starts_with("探"));
        assert!(e.contains("more bytes"));
        assert_eq!(excerpt("short", 10), "short");
    }
}
