"""poolbench's tests: unit/ by library layer, cli/, integration/ (real runs and sweeps), slow/
(``pytest -m slow``), and the helpers they share in helpers/."""
