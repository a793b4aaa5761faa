"""Data pipeline: readers for every format, convert, token index with meta.json, mixtures, templates, packing.

Public entry points (import the modules directly; nothing heavy is imported here):
- `spec.DataSpec`: what the training config asks for.
- `dataset.build_sft_datasets(spec, tokenizer, stage)`: (train, eval | None, `report.DataReport`).
- `collate.make_collator(tokenizer, packing, pad_to_multiple_of)`: batches of torch tensors. Packed batches carry
  `position_ids` and `use_cache=False` and no `attention_mask`; pass them to the model as they are.
- `entries.read_preference(entries, base_dir)`: `{"prompt","chosen","rejected"}` records for trl.
- `templates.resolve_template(value, tokenizer)` (the default `auto`, built-ins, user-defined templates);
  `encoding.encode(sample, tokenizer, template, stage)`; `index.build_index` / `index.TokenIndex`;
  `mixture.load_mixture` / `plan_mixture` / `materialize_mixture`; `convert.convert_file` / `convert_to_split`.
"""

DEFAULT_TEMPLATE = "auto"  # the template `index`, `preview` and training use unless told (see templates.py)
