"""What a run shows and records. Callbacks reach a model only through `sample()`,
`num_classes` and `conditional`, and reach data only through `eval_set()`, `centers`
and `std`."""
