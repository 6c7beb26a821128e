//! Interop with other projects' code: Hugging Face transformers fixtures (made by
//! `bench/hf/make_fixtures.py`) imported and compared with transformers' own logits, chat
//! templates rendered as transformers renders them, and GGUF files read as llama.cpp reads them.

mod chat;
mod gguf_export;
pub mod gguf_reader;
mod hf_export;
mod hf_import;
mod hf_refusals;
