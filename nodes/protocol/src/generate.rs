//! `generate`'s params.

crate::param_enum! {
    /// What a completion cut by `max_new_tokens` does.
    pub enum OnLength {
        /// Fail the node (strict runs).
        Error = "error",
        /// Warn and keep it (dev runs).
        Warn = "warn",
    }
}

crate::params! {
    /// Params of `generate`.
    pub struct GenerateParams {
        prompt: String = Str, REQUIRED, "user message template, `{column}` placeholders";
        system_prompt: Option<String> = Str, OPTIONAL, "system message";
        chat: bool = Bool, true, "render with the model's chat template (false: raw text)";
        max_new_tokens: i64 = Int, 256, "tokens per completion at most", min = 1.0;
        temperature: f64 = Float, 0.0, "0 = greedy", min = 0.0;
        top_p: f64 = Float, 1.0, "nucleus mass", above = 0.0, max = 1.0;
        top_k: i64 = Int, 0, "0 = off", min = 0.0;
        n: i64 = Int, 1, "samples per row", min = 1.0;
        seed: i64 = Int, 0, "base seed; each row's stream derives from it", min = 0.0;
        stop: Vec<String> = List(&Str), serde_json::json!([]), "stop strings";
        batch_size: i64 = Int, 16, "sequences decoded together", min = 1.0;
        on_length: OnLength = Enum(<OnLength as crate::params::ParamEnum>::NAMES), "warn",
            "a completion cut by max_new_tokens: fail (strict) or warn (dev)";
    }
}
