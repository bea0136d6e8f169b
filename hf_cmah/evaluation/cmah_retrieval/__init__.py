"""The `evaluate` metric module folder: ``evaluate.load("<this folder>")`` reads cmah_retrieval.py."""
