//! Interop with other projects' code: Hugging Face transformers fixtures (made by
//! `bench/hf/make_fixtures.py`) imported and compared with transformers' own logits, and chat
//! templates rendered as transformers renders them.

mod chat;
mod hf_export;
mod hf_import;
mod hf_refusals;
