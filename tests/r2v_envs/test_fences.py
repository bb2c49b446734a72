"""One fence extractor: the HumanEval env, the prompt format and the rule verifier agree.

Before, three regexes disagreed: a ```python3 block was code to the env but scored 0.10 (no
code) in the rule verifier, and the prompt format did not see it as code either.
"""

from __future__ import annotations

import pytest

from r2v_agent.policy.prompts import FORMATS
from r2v_agent.verifier.rules import RuleVerifier
from r2v_envs import fences
from r2v_envs.humaneval.env import extract_code

BODY = "def f(x):\n    return x + 1\n"

# (reply, the Python code in it or None)
TABLE = [
    (f"```python\n{BODY}```", BODY),
    (f"```python3\n{BODY}```", BODY),
    (f"```Python\n{BODY}```", BODY),
    (f"```py\n{BODY}```", BODY),
    (f"```py3\n{BODY}```", BODY),
    (f"``` python\n{BODY}```", BODY),
    (f"```\n{BODY}```", BODY),
    (f'```python title="sol.py"\n{BODY}```', BODY),
    (f"```python\r\n{BODY}```", BODY),
    (f"````python\n{BODY}````", BODY),
    (f"Here it is:\n```python\n{BODY}```\nDone.", BODY),
    (f"```python\ndef g():\n    pass\n```\nbetter:\n```python\n{BODY}```", BODY),
    (f"```python\n{BODY}```\n```bash\nls\n```", BODY),  # the last *Python* block
    (f"```bash\n{BODY}```", None),
    (f"```javascript\n{BODY}```", None),
    (f"```python\n{BODY}", None),  # unclosed: cut off mid-code
    (BODY, None),
]


@pytest.mark.parametrize(("reply", "code"), TABLE)
def test_every_reader_agrees_on_fence_variants(reply: str, code: str | None) -> None:
    found = fences.last_block(reply, fences.PYTHON)
    assert (found.strip("\r\n") if found is not None else None) == (
        code.strip("\n") if code else None
    )
    # The env writes exactly this code (or rejects the action).
    env_code = extract_code(reply)
    assert (env_code is not None) == (code is not None)
    if code is not None:
        assert env_code == code
    # The prompt format sends a block the env reads back as the same code.
    action = FORMATS["humaneval"].extract_action(reply)
    assert (extract_code(action) is not None) == (code is not None)
    if code is not None:
        assert extract_code(action).strip() == code.strip()
    # The rule verifier scores it as code that parses (0.70) or as no code (0.10).
    score = RuleVerifier("humaneval").score("", [reply], {})[0]
    assert score == (0.70 if code is not None else 0.10)


def test_shell_blocks_for_terminal_actions() -> None:
    assert FORMATS["terminalbench"].extract_action("Run:\n```console\nls -la /app\n```") == (
        "ls -la /app"
    )
    assert fences.last_block("```sh\necho hi\n```", fences.SHELL) == "echo hi\n"
    assert [b.language for b in fences.blocks("```a\n1\n```\n```B\n2\n```")] == ["a", "b"]
