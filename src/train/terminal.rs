//! burn-train's terminal dashboard for a run that can be interrupted. The dashboard puts the
//! terminal in raw mode, where Ctrl-C is a key it ignores; with an interrupter it is set back to
//! a signal (SIGINT), so the caller's signal handler can stop the run cleanly.

use burn::train::renderer::tui::TuiMetricsRenderer;
use burn::train::Interrupter;

/// The terminal dashboard whose quit popup and Ctrl-C both stop the run through `interrupter`.
/// The terminal's modes are restored when the dashboard is dropped.
pub(crate) fn interruptible_tui(interrupter: Interrupter) -> TuiMetricsRenderer {
    let renderer = TuiMetricsRenderer::new(interrupter, None);
    ctrl_c_as_signal();
    renderer
}

/// Turns the terminal's signal keys (Ctrl-C, Ctrl-\) back on after the dashboard's raw mode.
#[cfg(unix)]
fn ctrl_c_as_signal() {
    // SAFETY: termios calls on a descriptor this function opens and closes; the struct is plain
    // data that tcgetattr fills before it is read.
    unsafe {
        let fd = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if fd < 0 {
            return;
        }
        let mut modes: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut modes) == 0 {
            modes.c_lflag |= libc::ISIG;
            libc::tcsetattr(fd, libc::TCSANOW, &modes);
        }
        libc::close(fd);
    }
}

#[cfg(not(unix))]
fn ctrl_c_as_signal() {}
