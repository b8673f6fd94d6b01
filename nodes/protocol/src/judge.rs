//! The params of judge-graded nodes: which judge, how it is asked, and how the calls run.

crate::params! {
    /// Which judge grades and how the calls to it run. Shared by every judge-graded node.
    /// The settings of how calls run (concurrency, retries, timeout, budget) stay out of the
    /// cache key: they cannot change a verdict, and every answered call is kept anyway.
    pub struct JudgeParams {
        judge_url: Option<String> = Str, OPTIONAL,
            "base URL of an OpenAI-compatible API, up to and including `/v1` (or connect a local `judge` model instead)";
        judges: Option<Vec<String>> = List(&Str), OPTIONAL,
            "judge model names at `judge_url`; with several, each grades every item and scores are averaged";
        judge_revisions: Option<Vec<String>> = List(&Str), OPTIONAL,
            "the model id the API must report for each of `judges` (same order; e.g. a dated snapshot): it enters every call's key, and a reply from another model is refused";
        api_key_env: Option<String> = SecretEnv, OPTIONAL,
            "NAME of the environment variable holding the API key, sent as a bearer token (never stored)";
        judge_temperature: f64 = Float, 0.0, "sampling temperature of the judge", min = 0.0;
        judge_max_tokens: i64 = Int, 1024, "tokens per verdict at most", min = 1.0;
        judge_seed: Option<i64> = Int, OPTIONAL, "seed sent with each request, where the API honours one", min = 0.0;
        json_verdict: bool = Bool, false,
            "hold an API judge to a JSON schema (`response_format`): its reasoning, then exactly one of the scorer's verdicts (local judges are always held to the verdicts)";
        concurrency: i64 = Int, 8, "requests in flight at once", min = 1.0, run_setting = true;
        max_retries: i64 = Int, 8,
            "retries of one call after a 429, a 5xx, a timeout or a connection error", min = 0.0, run_setting = true;
        timeout_s: f64 = Float, 120.0, "seconds one request may take", above = 0.0, run_setting = true;
        max_calls: Option<i64> = Int, OPTIONAL,
            "requests this run may send, retries included; calls answered before are free", min = 1.0, run_setting = true;
    }
}

crate::params! {
    /// Params of `anima`, beside [`JudgeParams`].
    pub struct AnimaParams {
        answer_column: String = Str, "completion", "the column holding the model's answer";
        epoch_column: String = Str, "sample", "the column numbering a question's independent answers (epochs)";
        language: Option<String> = Str, OPTIONAL, "grade only questions in this language (null counts as English)";
        allow_partial: bool = Bool, false, "accept `GRADE: P` (0.5) as a verdict";
        grader_template: Option<String> = Str, OPTIONAL,
            "the grader's prompt with {question}, {answer}, {dimension}, {guiding_question}, {indicators}, {letters}, {choices} (default: the model-graded-QA form)";
    }
}

crate::params! {
    /// Params of `grade-qa`, beside [`JudgeParams`].
    pub struct GradeQaParams {
        question_column: String = Str, "prompt", "the column holding the task the model was given";
        target_column: String = Str, "target", "the column holding the criterion or the correct answer";
        answer_column: String = Str, "completion", "the column holding the model's answer";
        epoch_column: String = Str, "sample", "the column numbering a row's independent answers (epochs)";
        allow_partial: bool = Bool, false, "accept `GRADE: P` (0.5) as a verdict";
        grader_template: Option<String> = Str, OPTIONAL,
            "the grader's prompt with {question}, {answer}, {criterion}, {letters}, {choices} (default: inspect's model-graded-QA form)";
    }
}

crate::params! {
    /// Params of `harmbench`, beside [`JudgeParams`].
    pub struct HarmBenchParams {
        standard_prompt: String = Path, REQUIRED,
            "the classifier prompt for behaviours without the `context` tag ({behavior}, {generation})";
        contextual_prompt: String = Path, REQUIRED,
            "the classifier prompt for behaviours with the `context` tag ({context}, {behavior}, {generation})";
        answer_column: String = Str, "completion", "the column holding the model's generation";
        epoch_column: String = Str, "sample", "the column numbering a behaviour's generations";
    }
}

crate::param_enum! {
    /// Which way a judge's score points.
    pub enum ScaleDirection {
        /// 1 = refusal (safe), 0 = harmful help: AIR-Bench's README and judge prompts.
        HigherIsSafer = "higher-is-safer",
        /// 1 = harmful help, 0 = refusal.
        HigherIsLessSafe = "higher-is-less-safe",
    }
}

crate::params! {
    /// Params of `airbench`, beside [`JudgeParams`].
    pub struct AirBenchParams {
        judge_prompts: String = Path, REQUIRED,
            "a JSON or JSONL table of `cate_idx` and `judge_prompt` (with {{QUESTION}} and {{ANSWER}})";
        score_direction: ScaleDirection = Enum(<ScaleDirection as crate::params::ParamEnum>::NAMES), REQUIRED,
            "which way the judge prompts' scale points (the published copies disagree): higher-is-safer or higher-is-less-safe";
        answer_column: String = Str, "completion", "the column holding the model's answer";
        epoch_column: String = Str, "sample", "the column numbering an item's answers";
    }
}

/// The worker job a local judge runs: no graph node of its own, but a step of every
/// judge-graded node whose `judge` input is connected to a model.
pub const LOCAL_JUDGE_JOB: &str = "judge-verdicts";

crate::params! {
    /// Params of [`LOCAL_JUDGE_JOB`].
    pub struct LocalJudgeParams {
        batch_size: i64 = Int, 8, "requests scored together", min = 1.0;
    }
}

/// One chat message of a local judge's request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// One call a local judge answers (a line of the job's `requests` input): the reply is the
/// choice the model finds most likely after the rendered conversation, so it is always one
/// of `choices`, the verdict grammar's whole language.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocalJudgeRequest {
    /// The call's key, hex: the reply is saved under it.
    pub key: String,
    /// The conversation, rendered with the model's chat template.
    pub messages: Vec<ChatMessage>,
    /// The replies allowed.
    pub choices: Vec<String>,
}

/// A local judge's answer to one request (a saved item of the job).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LocalJudgeReply {
    /// [`LocalJudgeRequest::key`].
    pub key: String,
    /// The chosen reply.
    pub text: String,
    /// Each choice's summed log-likelihood, in `choices` order.
    pub logprobs: Vec<f64>,
}

crate::params! {
    /// Params of `rubric-label`, beside [`JudgeParams`].
    pub struct RubricLabelParams {
        rubric: String = Path, REQUIRED, "the rubric the judge applies (a text or markdown file)";
        labels: Vec<String> = List(&Str), REQUIRED,
            "the labels the rubric defines, e.g. [\"Low Stakes\", \"High Stakes\"]; the n-th is written as n";
        text_column: String = Str, "text", "the column holding the text to label";
        label_column: String = Str, "rubric_label", "the column receiving the label's number (null where unlabelled)";
        compare_column: Option<String> = Str, OPTIONAL,
            "a column of existing labels (numbers as `labels` numbers them) to report agreement with";
        label_judge: Option<String> = Str, OPTIONAL,
            "the judge whose labels are written (default: the first, a connected local judge before API judges); the others enter the agreement";
        calibrate_with: Option<Vec<String>> = List(&Str), OPTIONAL,
            "local judges: content-free texts (e.g. [\"N/A\", \"\"]) whose label probabilities, averaged, divide each row's before the label is picked (contextual calibration), so a small judge's leaning to one label does not decide every row";
    }
}
