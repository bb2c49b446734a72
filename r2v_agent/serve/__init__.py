"""``r2v serve``: the routed agent as an OpenAI-compatible chat endpoint.

    r2v serve --agent runs/demo/router/agent --teacher-url http://127.0.0.1:8001/v1 \
        --teacher-model gpt-4o [--host 127.0.0.1] [--port 8000] [--api-key-file KEY]

:func:`r2v_agent.serve.app.create_app` builds the ASGI app; :mod:`.cli` loads the agent and
runs it under uvicorn. (Nothing is imported here, so ``r2v --help`` stays light and works
without the ``serve`` extra.)
"""
