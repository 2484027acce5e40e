"""`pickloop seed-data`: from domain documents to the step-1 QA dataset.

Documents (Markdown, text, HTML, PDF, or an HF dataset's text column) are read (`documents`), cut into
chunks by headings and paragraphs under a token budget (`chunking`), turned into question-answer pairs
and short conversations by a local causal LM or an OpenAI-compatible endpoint (`backends`, `prompts`,
`parse`), cleaned (near-duplicate questions dropped, answers not supported by their chunk flagged:
`quality`) and written as the JSONL `pickloop run` reads, with each row's provenance (`pipeline`).
"""
