//! Integration tests of the data pipeline.

mod common;

mod corpus;
mod generated;
mod sources;
mod tokenizers;
