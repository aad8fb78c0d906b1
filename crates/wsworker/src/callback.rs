//! Running the application's callbacks, one way for the server's and the client's: a
//! panic is contained, and a callback that fails (returns an error or panics) ends its
//! connection with the error's own close code.

use wsworker_proto::CloseCode;

use crate::error::{Error, Result};
use crate::shared::contain;

/// Runs a callback; its failure, if it failed. `closing`: the connection's close has
/// begun, and a send that found it closed (a reply to a message that arrived after the
/// close began) is no failure — the browser drops such a send silently, and so do we.
pub(crate) fn run(closing: bool, f: impl FnOnce() -> Result<()>) -> Option<Error> {
    match contain(f) {
        Ok(Ok(())) => None,
        Ok(Err(Error::Closed)) if closing => None,
        Ok(Err(error)) => Some(error),
        Err(panic) => Some(Error::CallbackPanic(panic)),
    }
}

/// How a callback's failure ends its connection: the error's own close code (1003 for a
/// message of the wrong type, 1009 for one too big, …), 1011 for any other, and a reason.
pub(crate) fn ending(error: &Error) -> (CloseCode, &'static str) {
    let code = error
        .close_code()
        .filter(|code| code.is_valid_on_wire())
        .unwrap_or(CloseCode::INTERNAL_ERROR);
    let reason = match code {
        CloseCode::PROTOCOL_ERROR => "protocol error",
        CloseCode::UNSUPPORTED_DATA => "unsupported data",
        CloseCode::INVALID_PAYLOAD => "invalid payload",
        CloseCode::POLICY_VIOLATION => "policy violation",
        CloseCode::MESSAGE_TOO_BIG => "message too big",
        _ => "internal error",
    };
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_ends_with_its_own_code_or_1011() {
        let wrong_type = run(false, || Err(Error::WrongMessageType { expected: "text" }));
        assert_eq!(
            ending(&wrong_type.unwrap()),
            (CloseCode::UNSUPPORTED_DATA, "unsupported data")
        );
        let panicked = run(false, || panic!("boom")).unwrap();
        assert!(matches!(panicked, Error::CallbackPanic(ref p) if p.contains("boom")));
        assert_eq!(
            ending(&panicked),
            (CloseCode::INTERNAL_ERROR, "internal error")
        );
        assert_eq!(
            ending(&Error::Unsupported("x")),
            (CloseCode::INTERNAL_ERROR, "internal error")
        );
        // A send after the close began is no failure; before it, it is one.
        assert!(run(true, || Err(Error::Closed)).is_none());
        assert!(matches!(
            run(false, || Err(Error::Closed)),
            Some(Error::Closed)
        ));
        assert!(run(false, || Ok(())).is_none());
    }
}
