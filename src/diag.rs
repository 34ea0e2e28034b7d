//! `-v`/`--verbose`: what a command decides, said on stderr (stdout holds
//! only the answer).

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(0);

/// Sets how much is said (the count of `-v`).
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Whether `-v` was given at least `level` times.
pub fn enabled(level: u8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level
}

/// Says `message` on stderr when `-v` was given at least `level` times.
#[macro_export]
macro_rules! diag {
    ($level:expr, $($arg:tt)*) => {
        if $crate::diag::enabled($level) {
            eprintln!("agent-exec: {}", format_args!($($arg)*));
        }
    };
}
