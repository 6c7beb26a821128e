//! Chat templates rendered with minijinja against transformers' `apply_chat_template` (Jinja2)
//! on the chat fixture, tokens included.

use serde_json::Value;
use tritter::data::Tokenizer;
use tritter::infer::{ChatMessage, ChatTemplate};

use super::hf_import::committed_fixture as fixture;

#[test]
fn chat_template_renders_and_tokenizes_as_transformers() {
    let dir = fixture("chat");
    let template = ChatTemplate::from_dir(&dir).unwrap().expect("the fixture has a template");
    let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let expected: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected_chat.json")).unwrap()).unwrap();
    assert_eq!(expected.len(), 4);
    for case in expected {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let text = template.render(&messages, case["add_generation_prompt"].as_bool().unwrap()).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap());
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tokenizer.encode_reference(&text).unwrap(), ids, "{text:?}");
    }
}

#[test]
fn chat_template_errors_are_reported_not_panicked() {
    let template = ChatTemplate::from_dir(&fixture("chat")).unwrap().unwrap();
    let wrong_order = [ChatMessage::new("assistant", "hi"), ChatMessage::new("user", "hello")];
    let error = template.render(&wrong_order, true).unwrap_err().to_string();
    assert!(error.contains("Conversation roles must alternate"), "{error}");
    assert!(ChatTemplate::new("{% for %}", "", "").is_err(), "a template that does not parse");
}

/// Python string methods and loop controls, which chat templates use and Jinja2 (with
/// transformers' `loopcontrols`) provides; blocks trimmed as transformers trims them. The
/// expected text is Jinja2's (trim_blocks, lstrip_blocks, loopcontrols) for this template.
#[test]
fn chat_templates_get_python_methods_and_trimmed_blocks() {
    let source = "{% for m in messages %}\n  {% if m.content.startswith('skip') %}{% continue %}{% endif %}\n  [{{ m.role.upper() }}] {{ m.content.strip() }}\n{% endfor %}";
    let template = ChatTemplate::new(source, "<s>", "</s>").unwrap();
    let messages =
        [ChatMessage::new("user", "  a  "), ChatMessage::new("user", "skip me"), ChatMessage::new("assistant", "b")];
    assert_eq!(template.render(&messages, false).unwrap(), "  [USER] a\n  [ASSISTANT] b\n");
}
