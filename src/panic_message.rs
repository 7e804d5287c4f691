//! The text of a caught panic, for the error that reports it: the compute threads, the
//! image-decoding pool and the ONNX loader each catch panics and answer with it.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::Arc;

/// The message a panic was raised with (`panic!` gives a `&str` or a `String`), or
/// `"unknown panic"` for any other payload.
pub fn of(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

thread_local! {
    /// Set while this thread runs [`catch_quietly`]'s closure.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, giving a panic inside it back as its message, as `catch_unwind` does, but
/// without the panic hook's report on stderr: for a panic that is an answer (a library that
/// panics where it could have returned an error), not a fault. A panic on any other thread
/// meanwhile is reported as always.
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    type Hook = dyn Fn(&PanicHookInfo<'_>) + Send + Sync;
    let previous: Arc<Hook> = Arc::from(panic::take_hook());
    let around = Arc::clone(&previous);
    panic::set_hook(Box::new(move |info| {
        if !QUIET.get() {
            around(info);
        }
    }));
    QUIET.set(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.set(false);
    drop(panic::take_hook());
    panic::set_hook(Box::new(move |info| previous(info)));
    result.map_err(|payload| of(&*payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_catch_gives_the_message_and_leaves_the_hook_as_it_was() {
        assert_eq!(catch_quietly(|| 7), Ok(7));
        assert_eq!(
            catch_quietly(|| -> u8 { panic!("no driver") }),
            Err("no driver".to_owned())
        );
        assert!(!QUIET.get());
        // Outside, a panic reaches the hook again. (Other tests' threads may panic
        // meanwhile: only this thread's count.)
        let reported = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&reported);
        let this = std::thread::current().id();
        let before = panic::take_hook();
        panic::set_hook(Box::new(move |_| {
            if std::thread::current().id() == this {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }));
        assert!(catch_quietly(|| -> u8 { panic!("quiet") }).is_err());
        assert!(!reported.load(std::sync::atomic::Ordering::SeqCst));
        let _ = panic::catch_unwind(|| panic!("loud"));
        assert!(reported.load(std::sync::atomic::Ordering::SeqCst));
        panic::set_hook(before);
    }

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
