//! Chat prompts rendered from the model's own Jinja template with minijinja, in the
//! environment transformers' `apply_chat_template` uses: `trim_blocks` and `lstrip_blocks` on,
//! loop controls, `raise_exception(msg)`, Python string methods
//! (`.strip()`, `.startswith()`, ...) via minijinja-contrib's pycompat, and the tokenizer's
//! special tokens (`bos_token`, `eos_token`, ...) as variables.
//!
//! `strftime_now` is deliberately not defined: a prompt that embeds today's date would change
//! every cache key daily. Templates that use it (Llama 3.1+) test `strftime_now is defined` and
//! fall back to their fixed date.

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tokenizer::SpecialTokens;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template bound to its special tokens.
pub struct ChatTemplate {
    env: Environment<'static>,
    special: SpecialTokens,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("special", &self.special)
            .finish_non_exhaustive()
    }
}

fn template_error(source: minijinja::Error) -> Error {
    Error::Template { source }
}

impl ChatTemplate {
    /// Compiles `source`.
    pub fn new(source: &str, special: SpecialTokens) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // transformers renders chat templates with trim_blocks and lstrip_blocks on.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template_owned("chat", source.to_string())
            .map_err(template_error)?;
        Ok(ChatTemplate { env, special })
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(template_error)?;
        tmpl.render(context! {
            messages => minijinja::value::Serde(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.special.bos.clone(),
            eos_token => self.special.eos.clone(),
            pad_token => self.special.pad.clone(),
            unk_token => self.special.unk.clone(),
        })
        .map_err(template_error)
    }
}

/// The messages of one user turn, with an optional system prompt first.
pub fn user_turn(system: Option<&str>, user: &str) -> Vec<Message> {
    system
        .map(|s| Message::new("system", s))
        .into_iter()
        .chain([Message::new("user", user)])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special() -> SpecialTokens {
        SpecialTokens {
            bos: Some("<s>".into()),
            eos: Some("</s>".into()),
            ..SpecialTokens::default()
        }
    }

    #[test]
    fn renders_system_prompt_generation_prompt_and_bos() {
        let src = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content.strip() }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}";
        let t = ChatTemplate::new(src, special()).unwrap();
        let with_system = t
            .render(&user_turn(Some("Be brief."), " Hi "), true)
            .unwrap();
        assert_eq!(with_system, "<s>[system] Be brief.\n[user] Hi\n[assistant]");
        let plain = t.render(&user_turn(None, "Hi"), false).unwrap();
        assert_eq!(plain, "<s>[user] Hi\n");
    }

    #[test]
    fn raise_exception_becomes_an_error_with_its_message() {
        let src = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok";
        let t = ChatTemplate::new(src, special()).unwrap();
        let err = t.render(&user_turn(Some("x"), "y"), false).unwrap_err();
        let chain = format!("{:?}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains("System role not supported"), "{chain}");
        assert_eq!(t.render(&user_turn(None, "y"), false).unwrap(), "ok");
    }
}
