//! The `tritter` command line as a user runs it.

mod export;
mod faults;
mod pipes;
mod refusals;
mod runs;
