//! The kernel console over [`Arch::console_write`](crate::Arch::console_write):
//! [`print`] (one lock per call, so lines never interleave), [`print_unlocked`]
//! for fatal paths, and the `kprintln!`/`kprint!` macros.

use core::fmt::{self, Write};

use crate::arch::arch;
use crate::sync::IrqLock;

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        arch().console_write(s);
        Ok(())
    }
}

static CONSOLE: IrqLock<()> = IrqLock::new(());

/// Prints to the console (whole call under one lock: lines never interleave).
pub fn print(args: fmt::Arguments<'_>) {
    let _held = CONSOLE.lock();
    let _ = Console.write_fmt(args);
}

/// Prints without taking the lock: for panic and fatal exception paths,
/// where the lock holder may be the crashed code.
pub fn print_unlocked(args: fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

/// `println!` for the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($t:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` for the kernel console.
#[macro_export]
macro_rules! kprint {
    ($($t:tt)*) => { $crate::console::print(format_args!($($t)*)) };
}
