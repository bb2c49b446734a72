"""The training pipeline (``r2v pipeline``): one module per stage, each exposing
``run(config, out_dir) -> stats`` -- :mod:`.collect`, :mod:`.bc`, :mod:`.fit_verifier`,
:mod:`.dpo`, :mod:`.fit_router`, :mod:`.report` -- and :mod:`.pipeline`, which only orders,
skips and resumes them. :mod:`.components` builds what the stages share (the SLM, the verifier,
an agent over a stage's policy) from a config. (``fit_*``: the stages that train the run-time
``r2v_agent.verifier`` and ``r2v_agent.router``, named so they are not mistaken for them.)"""
