"""Signal receivers that keep follow-ups in step with plans, INR readings, labs and deteriorations."""
