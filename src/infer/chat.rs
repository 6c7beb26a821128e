//! Chat prompts: a model's chat template (`chat_template.jinja`, or `chat_template` in
//! `tokenizer_config.json`) rendered with minijinja as transformers' `apply_chat_template`
//! renders it with Jinja2 (trimmed blocks, `raise_exception`, Python string methods), and the
//! tokens that end a reply.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Result, TritterError};
use crate::io::read_json;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.to_string(), content: content.to_string() }
    }
}

/// A chat template with the special tokens it refers to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    /// Where the template came from, for errors.
    path: PathBuf,
    bos_token: String,
    eos_token: String,
}

/// A special token in `tokenizer_config.json`: a string or an `AddedToken` object.
fn token_text(value: Option<&Value>) -> String {
    match value {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).unwrap_or_default().to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    /// The template of the model directory `dir`, if it has one.
    pub fn from_dir(dir: &Path) -> Result<Option<Self>> {
        let config_path = dir.join("tokenizer_config.json");
        let config: Value = if config_path.is_file() { read_json(&config_path, "cannot read")? } else { Value::Null };
        let jinja = dir.join("chat_template.jinja");
        let (source, path) = if jinja.is_file() {
            let text = std::fs::read_to_string(&jinja).map_err(|source| TritterError::Io {
                action: "cannot read",
                path: jinja.clone(),
                source,
            })?;
            (text, jinja)
        } else {
            match config.get("chat_template") {
                Some(Value::String(s)) => (s.clone(), config_path.clone()),
                // A list of named templates: the one named "default".
                Some(Value::Array(named)) => {
                    match named.iter().find(|t| t.get("name").and_then(Value::as_str) == Some("default")) {
                        Some(t) => (
                            t.get("template").and_then(Value::as_str).unwrap_or_default().to_string(),
                            config_path.clone(),
                        ),
                        None => return Ok(None),
                    }
                }
                _ => return Ok(None),
            }
        };
        let template = Self {
            source,
            path,
            bos_token: token_text(config.get("bos_token")),
            eos_token: token_text(config.get("eos_token")),
        };
        template.environment()?; // a template that does not compile is refused at load
        Ok(Some(template))
    }

    /// The template's Jinja text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A template from its text and special tokens.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let template = Self {
            source: source.into(),
            path: PathBuf::from("<template>"),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        };
        template.environment()?;
        Ok(template)
    }

    /// The end-of-turn token's text (`eos_token`).
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    fn error(&self, e: minijinja::Error) -> TritterError {
        TritterError::Tokenizer { path: self.path.clone(), reason: format!("chat template: {e:#}") }
    }

    fn environment(&self) -> Result<minijinja::Environment<'_>> {
        let mut env = minijinja::Environment::new();
        // As transformers' Jinja2 environment: trim_blocks, lstrip_blocks, Python string methods.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        env.add_template("chat", &self.source).map_err(|e| self.error(e))?;
        Ok(env)
    }

    /// The prompt text of `messages`, ending with the assistant's turn header when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let env = self.environment()?;
        let template = env.get_template("chat").map_err(|e| self.error(e))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| self.error(e))
    }
}
