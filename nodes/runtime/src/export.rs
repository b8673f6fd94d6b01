//! Writing a model as a Hugging Face model folder, so a finetuned model leaves `dag` in the
//! form every other tool loads (`AutoModelForCausalLM.from_pretrained(dir)`, vLLM, and this
//! runtime's own [`crate::ModelSource::HfDir`]).

use std::path::Path;

use serde_json::json;

use crate::error::{Error, Result};
use crate::model::Model;

impl Model {
    /// Writes `config.json`, `model.safetensors` (every weight, an attached adapter folded
    /// in, in the model's dtype), `tokenizer.json`, `tokenizer_config.json` (special tokens and
    /// the chat template) and `generation_config.json` (EOS and padding ids) into `dir`.
    pub fn save_hf_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let write_json = |name: &str, value: serde_json::Value| {
            let path = dir.join(name);
            std::fs::write(&path, serde_json::to_vec_pretty(&value).expect("json"))
                .map_err(Error::io(&path))
        };
        let mut config = self.config().to_hf_json()?;
        config["torch_dtype"] = json!(match self.dtype() {
            crate::DType::F32 => "float32",
            crate::DType::F16 => "float16",
            crate::DType::Bf16 => "bfloat16",
        });
        write_json("config.json", config)?;
        self.write_merged(&dir.join("model.safetensors"))?;
        let tok = self.tokenizer();
        let path = dir.join("tokenizer.json");
        tok.inner()
            .save(&path, false)
            .map_err(Error::tokenizer("save tokenizer.json"))?;
        let s = &tok.special;
        write_json(
            "tokenizer_config.json",
            json!({
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": s.bos,
                "eos_token": s.eos,
                "pad_token": s.pad,
                "unk_token": s.unk,
                "chat_template": tok.chat_template,
                "clean_up_tokenization_spaces": false,
            }),
        )?;
        write_json(
            "generation_config.json",
            json!({
                "eos_token_id": self.eos_token_ids(),
                "pad_token_id": self.pad_token_id,
            }),
        )
    }
}
