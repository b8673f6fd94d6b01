//! `evaluate`'s params.

crate::param_enum! {
    /// What a template lint error does.
    pub enum Lint {
        /// Stop before the model runs.
        Error = "error",
        /// Only warn.
        Warn = "warn",
    }
}

crate::params! {
    /// Params of `evaluate`.
    pub struct EvaluateParams {
        tasks: Vec<String> = List(&Str), REQUIRED,
            "task or group names, e.g. [\"advanced_ai_risk_human\"]";
        definitions: Option<String> = Path, OPTIONAL,
            "a TOML task file, an lm-eval task YAML, or a directory of YAML (default: the built-in sets)";
        data: Option<String> = Path, OPTIONAL,
            "the directory the built-in definitions' data paths are relative to (../shared/data)";
        test_file: Option<String> = Path, OPTIONAL,
            "the evaluated split for the named tasks, replacing the definition's (MMLU's test file)";
        fewshot_file: Option<String> = Path, OPTIONAL,
            "the few-shot split for tasks that take one (GSM8K train, MMLU dev)";
        num_fewshot: Option<i64> = Int, OPTIONAL, "override every task's few-shot count", min = 0.0;
        limit: Option<i64> = Int, OPTIONAL, "the first N documents of each task (lm-eval's --limit)",
            min = 1.0;
        batch_size: i64 = Int, 16, "contexts scored together (results do not depend on it)",
            min = 1.0;
        chat: bool = Bool, false,
            "render prompts with the model's chat template (lm-eval's --apply_chat_template)";
        system_prompt: Option<String> = Str, OPTIONAL,
            "system message / instruction before each prompt";
        fewshot_as_multiturn: bool = Bool, false, "with `chat`: few-shot examples as separate turns";
        bootstrap_iters: i64 = Int, 1000, "resamples for the 95% intervals", min = 2.0;
        seed: i64 = Int, 1234, "bootstrap seed (and base seed of sampled generation)", min = 0.0;
        lint: Lint = Enum(<Lint as crate::params::ParamEnum>::NAMES), "error",
            "what a template lint error does: stop before the model runs, or only warn";
    }
}
