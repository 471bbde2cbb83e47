"""The worker side: what runs trials and reports them back.

:mod:`.executor` is the contract between the job loop and whatever runs trials;
:mod:`.ray_executor` runs them on Ray (the one module that imports Ray for training),
:mod:`.inline_executor` in this process for tests. :mod:`.trainer` builds, trains and reports one
trial through :mod:`.reporter`; :mod:`.predictor` serves final models.
"""
