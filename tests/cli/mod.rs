//! The `tritter` command line as a user runs it.

mod pipes;
mod refusals;
