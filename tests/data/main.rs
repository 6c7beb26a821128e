//! Integration tests of the data pipeline. One binary, so the suite links once.

mod common;

mod corpus;
mod generated;
mod sources;
mod tokenizers;
