//! Ctrl-C and SIGTERM during `tritter train`: the first stops the run after its current step
//! (a checkpoint is saved, the terminal restored, the resume command printed) and the process
//! exits 130 or 143; a second one ends the process at once.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tritter::train::Interrupter;

/// The interrupter a run stops on, and which signal triggered it.
pub struct Interrupts {
    pub interrupter: Interrupter,
    signal: Arc<AtomicI32>,
}

impl Interrupts {
    /// The shell's exit status for the signal that stopped the run (128 + its number).
    pub fn exit_code(&self) -> Option<u8> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(128 + signal as u8),
        }
    }
}

/// Starts watching for SIGINT and SIGTERM (on unix; elsewhere Ctrl-C keeps its default).
/// `dashboard`: the terminal dashboard will be up, to be taken down on a hard exit.
pub fn watch(dashboard: bool) -> Interrupts {
    let interrupts = Interrupts { interrupter: Interrupter::new(), signal: Arc::new(AtomicI32::new(0)) };
    #[cfg(unix)]
    unix::spawn(interrupts.interrupter.clone(), interrupts.signal.clone(), dashboard);
    #[cfg(not(unix))]
    let _ = dashboard;
    interrupts
}

#[cfg(unix)]
mod unix {
    use std::io::{IsTerminal, Write};
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;

    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use tritter::train::Interrupter;

    pub fn spawn(interrupter: Interrupter, signal: Arc<AtomicI32>, dashboard: bool) {
        let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else { return };
        let terminal = TerminalModes::save(dashboard);
        std::thread::spawn(move || {
            for received in signals.forever() {
                if signal.swap(received, Ordering::SeqCst) != 0 {
                    terminal.restore();
                    eprintln!("\nStopped at once (second signal); the last saved checkpoint is the latest.");
                    std::process::exit(128 + received);
                }
                let name = if received == SIGINT { "SIGINT" } else { "SIGTERM" };
                eprintln!("\n{name}: stopping after this step and saving a checkpoint (again to stop at once)");
                interrupter.stop(Some(name));
            }
        });
    }

    /// The terminal's modes before the dashboard changed them, to put back on a hard exit.
    struct TerminalModes(Option<libc::termios>);

    impl TerminalModes {
        fn save(dashboard: bool) -> Self {
            if !dashboard {
                return Self(None);
            }
            // SAFETY: tcgetattr fills the plain-data struct on a descriptor that stays open.
            unsafe {
                let mut modes: libc::termios = std::mem::zeroed();
                Self((libc::tcgetattr(libc::STDIN_FILENO, &mut modes) == 0).then_some(modes))
            }
        }

        /// Leaves the dashboard's alternate screen, shows the cursor and restores the modes.
        fn restore(&self) {
            if let Some(modes) = &self.0 {
                // SAFETY: sets the terminal modes read by `save` on the same descriptor.
                unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, modes) };
            }
            if self.0.is_some() && std::io::stdout().is_terminal() {
                let _ = std::io::stdout().write_all(b"\x1b[?1049l\x1b[?25h");
                let _ = std::io::stdout().flush();
            }
        }
    }
}
