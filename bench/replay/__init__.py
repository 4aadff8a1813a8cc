"""The replay benchmark: validation curves recorded once (``record.py``), studies replayed over them."""
