"""The numerics: Lanczos with full re-orthogonalisation, bases, quadrature, density and
statistics, Ritz pairs. Pure numpy/scipy: no Ray, no deep-learning framework."""
