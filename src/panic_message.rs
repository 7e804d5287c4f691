//! The text of a caught panic, for the error that reports it: the compute threads, the
//! image-decoding pool and the ONNX loader each catch panics and answer with it.

use std::any::Any;

/// The message a panic was raised with (`panic!` gives a `&str` or a `String`), or
/// `"unknown panic"` for any other payload.
pub fn of(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_and_string_payloads_give_their_text() {
        let text = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(of(&*text), "static");
        let formatted = std::panic::catch_unwind(|| panic!("{}", 42)).unwrap_err();
        assert_eq!(of(&*formatted), "42");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
        assert_eq!(of(&*other), "unknown panic");
    }
}
