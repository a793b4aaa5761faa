"""Other tools' training-config layouts, each translated into our schema (`orchestrator.train.config.schema`):
`chatglm3` (ChatGLM3's finetune_demo: `data_config`, `max_input_length`, `peft_config`, ...) and `swift` (ms-swift's
command-line names: `sft_type`, `lora_rank`, `train_dataset_sample`, ...)."""
