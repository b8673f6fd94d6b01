//! The params of the probe study's nodes: `extract-activations`, `train-probe`,
//! `classify-prompted` and `finetune-classifier`, and the groups they share.

use crate::params::ParamEnum;

crate::param_enum! {
    /// Which end of a long row is cut.
    pub enum Truncation {
        /// Drop the first tokens (keeps a dialogue's final turn).
        Left = "left",
        /// Drop the last tokens.
        Right = "right",
    }
}

crate::param_enum! {
    /// Storage dtype of activations.
    pub enum StoredDtype {
        /// 32-bit floats.
        F32 = "f32",
        /// bfloat16.
        Bf16 = "bf16",
        /// 16-bit floats.
        F16 = "f16",
    }
}

crate::param_enum! {
    /// The probe families `train-probe` knows.
    pub enum Probe {
        /// Logistic regression on mean activations.
        MeanLogistic = "mean-logistic",
        /// The difference of the class means.
        DiffOfMeans = "diff-of-means",
        /// Linear discriminant analysis.
        Lda = "lda",
        /// A linear score per token, then an aggregate.
        PerToken = "per-token",
        /// A learned query and value.
        Attention = "attention",
    }
}

crate::param_enum! {
    /// How a per-token probe's token scores become a row score.
    pub enum Aggregate {
        /// The mean.
        Mean = "mean",
        /// The maximum.
        Max = "max",
        /// A softmax-weighted mean.
        Softmax = "softmax",
        /// The maximum of a rolling mean.
        RollingMax = "rolling-max",
        /// The last real token's.
        Last = "last",
    }
}

crate::param_enum! {
    /// Loss weights per class.
    pub enum ClassWeight {
        /// Equal weights.
        None = "none",
        /// n / (2 n_class), as scikit-learn's "balanced".
        Balanced = "balanced",
    }
}

crate::params! {
    /// How rows become token ids (shared by the nodes that read texts or conversations).
    pub struct Rendering {
        text_column: Option<String> = Str, OPTIONAL, "column holding raw text";
        messages_column: Option<String> = Str, OPTIONAL,
            "column holding a conversation (list of {role, content}), rendered with the chat template";
        chat: bool = Bool, false, "render `text_column` as one user turn with the chat template";
        system_prompt: Option<String> = Str, OPTIONAL,
            "system message put before each conversation (chat rendering only)";
        max_len: i64 = Int, 512,
            "tokens kept per row; longer rows are cut (see `truncation_side`) and counted", min = 1.0;
        truncation_side: Truncation = Enum(Truncation::NAMES), "left",
            "`left` drops the first tokens (keeps a dialogue's final turn), `right` the last";
    }
}

crate::params! {
    /// The per-dataset breakdown, shared by the nodes that write `scores`: absent, their
    /// outputs are what they were before it existed (no new keys, same cache keys).
    pub struct Grouping {
        group_column: Option<String> = Str, OPTIONAL,
            "column naming each row's source dataset: scores carry it as `group`, metrics gain `by_group` (per value)";
    }
}

crate::params! {
    /// `extract-activations`' own params (with [`Rendering`]).
    pub struct ExtractActivations {
        layer: i64 = Int, REQUIRED,
            "hidden_states index: 0 = embeddings, i = input of block i, num_layers = final-normed output",
            min = 0.0;
        layers: Option<Vec<i64>> = List(&Int), OPTIONAL,
            "layers one forward pass computes together (the matrix's list); each cell takes its own",
            min = 0.0;
        batch_size: i64 = Int, 8, "rows per forward pass", min = 1.0;
        dtype: StoredDtype = Enum(StoredDtype::NAMES), "f32", "storage dtype of the activations";
        shard_rows: i64 = Int, 128,
            "rows per shard file (bounds memory, and the work a kill can lose)", min = 1.0;
    }
}

/// Everything `extract-activations` takes.
pub type ExtractActivationsParams = (ExtractActivations, Rendering);

crate::params! {
    /// `train-probe`'s own params (with [`Grouping`]).
    pub struct TrainProbe {
        probe: Probe = Enum(Probe::NAMES), REQUIRED, "probe family";
        layer: Option<i64> = Int, OPTIONAL,
            "the activations' layer: lets a matrix over `layer` pair this node with extract-activations; checked",
            min = 0.0;
        label_column: String = Str, "label",
            "the 0/1 (or boolean) label column carried in the activations";
        aggregate: Aggregate = Enum(Aggregate::NAMES), "mean",
            "per-token probes: how token scores become a row score";
        temperature: f64 = Float, 1.0, "softmax aggregate temperature", above = 0.0;
        window: i64 = Int, 10, "rolling-max window in tokens", min = 1.0;
        C: f64 = Float, 1.0, "mean-logistic: inverse L2 strength (sklearn's C)", above = 0.0;
        cv: i64 = Int, 0,
            "mean-logistic: choose C from `Cs` by stratified k-fold AUROC (0 = use `C`)", min = 0.0;
        Cs: Vec<f64> = List(&Float), serde_json::json!([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0]),
            "candidate C values for `cv`", above = 0.0;
        shrinkage: Option<f64> = Float, OPTIONAL,
            "lda: fixed shrinkage in [0, 1] (absent: Ledoit-Wolf)", min = 0.0, max = 1.0;
        lr: f64 = Float, 1e-3, "learned probes: AdamW learning rate", above = 0.0;
        weight_decay: f64 = Float, 0.01, "AdamW weight decay", min = 0.0;
        epochs: i64 = Int, 50, "maximum epochs", min = 1.0;
        batch_size: i64 = Int, 16, "rows per micro-batch", min = 1.0;
        grad_accum: i64 = Int, 1, "micro-batches per optimizer step", min = 1.0;
        warmup: f64 = Float, 0.1, "fraction of steps of linear warmup, then cosine decay",
            min = 0.0, max = 1.0;
        patience: i64 = Int, 5, "epochs without a better validation AUROC before stopping",
            min = 1.0;
        class_weight: ClassWeight = Enum(ClassWeight::NAMES), "balanced", "loss weights per class";
        seeds: Vec<i64> = List(&Int), serde_json::json!([0]),
            "learned probes: one training per seed; metrics report their mean and spread", min = 0.0;
        bootstrap: i64 = Int, 1000, "bootstrap resamples for AUROC intervals", min = 0.0;
    }
}

/// Everything `train-probe` takes.
pub type TrainProbeParams = (TrainProbe, Grouping);

crate::params! {
    /// `classify-prompted`'s own params (with [`Grouping`]).
    pub struct ClassifyPrompted {
        template: String = Str, REQUIRED, "the question, `{column}` placeholders";
        answers: Vec<String> = List(&Str), REQUIRED,
            "two answers: the first means label 1 (positive), the second label 0";
        chat: bool = Bool, true, "render the question with the chat template";
        system_prompt: Option<String> = Str, OPTIONAL, "system message (chat only)";
        max_chars: Option<i64> = Int, OPTIONAL,
            "cut column values to their last N characters before filling the template", min = 1.0;
        label_column: String = Str, "label", "0/1 or boolean label column";
        split: String = Str, "test", "split name written in the scores";
        bootstrap: i64 = Int, 1000, "bootstrap resamples for AUROC intervals", min = 0.0;
    }
}

/// Everything `classify-prompted` takes.
pub type ClassifyPromptedParams = (ClassifyPrompted, Grouping);

crate::params! {
    /// `finetune-classifier`'s own params (with [`Rendering`], [`Grouping`] and the
    /// finetune node's LoRA and optimizer groups).
    pub struct FinetuneClassifier {
        label_column: String = Str, "label", "the 0/1 (or boolean) label column";
        class_weight: ClassWeight = Enum(ClassWeight::NAMES), "balanced",
            "loss weights per class (balanced: n / (2 n_class), as scikit-learn)";
        lr: f64 = Float, 1e-4, "peak learning rate", above = 0.0;
        seed: i64 = Int, 0, "seed of the adapter and head init, data order and dropout", min = 0.0;
        save_interval: i64 = Int, 100,
            "save the training state every this many steps, to resume after a kill (0 = never)",
            min = 0.0;
        bootstrap: i64 = Int, 1000, "bootstrap resamples for AUROC intervals", min = 0.0;
    }
}

/// Everything `finetune-classifier` takes.
pub type FinetuneClassifierParams = (
    FinetuneClassifier,
    Rendering,
    Grouping,
    crate::finetune::Adapter,
    crate::finetune::Optimizer,
);
