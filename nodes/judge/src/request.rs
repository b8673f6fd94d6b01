//! What one grading call asks, of whom, and the key it is remembered by.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// Everything a call sends beside the judge's name: the messages and the sampling settings.
/// Its canonical JSON enters the call's key, so a change to any of it is a new call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Tokens of the reply at most.
    pub max_tokens: u32,
    /// A seed, where the backend honours one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// A constraint on the reply's form (`{"type": "json_object", ...}`), where the backend
    /// supports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
}

/// Who answers: for an API judge its endpoint and model name. A different endpoint serving
/// the same name is another judge (a proxy, a quantised copy), so both enter the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeId {
    /// The API's base URL, without a trailing slash.
    pub endpoint: String,
    /// The model name sent with each request.
    pub model: String,
    /// The model id the API must report in its replies (a pinned snapshot behind an alias).
    /// Absent, the key is what it was before pins existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl JudgeId {
    /// The judge `model` at `endpoint` (a trailing `/` is dropped so both spellings agree).
    pub fn new(endpoint: &str, model: &str) -> Self {
        JudgeId {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            model: model.to_string(),
            revision: None,
        }
    }

    /// The same judge, answered only by the model the API reports as `revision`.
    pub fn pinned(self, revision: Option<String>) -> Self {
        JudgeId { revision, ..self }
    }

    /// Why `reply` cannot count as this judge's, if the judge is pinned to a revision the
    /// reply does not report.
    pub fn refuses(&self, reply: &JudgeReply) -> Option<String> {
        let pin = self.revision.as_deref()?;
        match reply.served_model.as_deref() {
            Some(m) if m == pin => None,
            Some(m) => Some(format!(
                "`{}` was answered by the served model `{m}`, not the pinned `{pin}`",
                self.model
            )),
            None => Some(format!(
                "`{}` is pinned to `{pin}`, but the API's reply names no model to check",
                self.model
            )),
        }
    }
}

/// The key a call's reply is remembered by: the judge, the full request and the epoch (the
/// same request asked again in another epoch is another sample at a temperature above 0).
/// Nothing else: not the node, not the graph, so an edit elsewhere reuses every call it can.
pub fn call_key(judge: &JudgeId, request: &JudgeRequest, epoch: u32) -> [u8; 32] {
    let preimage = serde_json::json!({
        "judge": judge,
        "request": request,
        "epoch": epoch,
    });
    let mut h = blake3::Hasher::new_derive_key("dag judge call v1");
    h.update(&serde_json::to_vec(&preimage).expect("a request serialises"));
    *h.finalize().as_bytes()
}

/// What a call returned, as it is saved and reused. Holds only what the judge said, never how
/// long it took or how many attempts it needed: those vary between runs of the same call and
/// go to the run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReply {
    /// The reply's text.
    pub text: String,
    /// The model id the server reported, where it reports one (it may differ from the name
    /// asked for: an alias, a dated snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// Why generation stopped (`stop`, `length`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// A local judge's summed log-likelihood of each allowed reply, in the request's order
    /// (what contextual calibration reweighs); an API's reply has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<f64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> JudgeRequest {
        JudgeRequest {
            messages: vec![Message::user(text)],
            temperature: 0.0,
            max_tokens: 16,
            seed: None,
            response_format: None,
        }
    }

    #[test]
    fn the_key_changes_with_the_judge_the_request_and_the_epoch_only() {
        let a = JudgeId::new("http://127.0.0.1:1/v1/", "judge-a");
        let k = call_key(&a, &request("x"), 0);
        assert_eq!(
            k,
            call_key(
                &JudgeId::new("http://127.0.0.1:1/v1", "judge-a"),
                &request("x"),
                0
            )
        );
        assert_ne!(
            k,
            call_key(
                &JudgeId::new("http://127.0.0.1:2/v1", "judge-a"),
                &request("x"),
                0
            )
        );
        assert_ne!(
            k,
            call_key(
                &JudgeId::new("http://127.0.0.1:1/v1", "judge-b"),
                &request("x"),
                0
            )
        );
        assert_ne!(k, call_key(&a, &request("y"), 0));
        assert_ne!(k, call_key(&a, &request("x"), 1));
        let mut hot = request("x");
        hot.temperature = 1.0;
        assert_ne!(k, call_key(&a, &hot, 0));
        let mut seeded = request("x");
        seeded.seed = Some(0);
        assert_ne!(k, call_key(&a, &seeded, 0));
    }
}
