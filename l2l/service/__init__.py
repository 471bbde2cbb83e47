"""The service layer: what the API and the command line may do, in the product's terms.

Jobs and trials (:mod:`.jobs`), what a job may ask for (:mod:`.jobspec`), datasets and uploads
(:mod:`.datasets`, :mod:`.uploads`, :mod:`.preprocessing`) and placement jobs
(:mod:`.placement_jobs`). Every function takes the store explicitly; nothing here imports Ray or
TensorFlow at module level.
"""
