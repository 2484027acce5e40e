"""Human evaluation of model versions: held-out questions, greedy answers from each model, blind
pairwise judgements in Argilla, and the statistics that say which model is better and how sure that is.

`questions` (which questions, never trained on), `answers` (each model's greedy answers), `pairs` (the
blind A/B records), `stats` (pure statistics), `report` (report.json / report.md / PNG) and `run` (the
`pickloop eval` steps, each skipped when its artifact is there and its inputs are unchanged).
"""
