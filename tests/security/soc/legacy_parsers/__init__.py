"""The parsers as they were before the columnar fast paths: the oracle of test_parsers_equivalence."""
