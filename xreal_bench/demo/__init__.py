"""Everything that exists only for the offline demo: phantom rendering and the synthetic data set
in the MIMIC-CXR-JPG layout, the ``phantom`` generator, the small shipped evaluators with their
training script and weights, a sample run and study, and the ``xreal-bench demo`` command."""
