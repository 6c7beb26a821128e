//! Integration tests of the data pipeline.

mod common;

mod corpus;
mod generated;
mod rust_sources;
mod sources;
mod tokenizers;
